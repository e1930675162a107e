"""What every section module provides, and what it is given to decode.

A section module has ``TAG`` (u8 in the file), ``NAME``, ``FLAG`` (its header flag bit,
or 0 for a required or ancillary section), ``SINCE_VERSION``, ``REQUIRED`` (required in a
file of one of its ``MODES``: "learned" — coded by the network — and/or "pixels"),
``encode(value) -> bytes | None`` (None: nothing to send), ``decode(payload, context)``
and ``describe(payload) -> dict`` (for ``udic info``; torch-free and cheap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

ANCILLARY_TAG_MIN = 128  # tags ≥ 128 are ancillary: a decoder that does not know one skips it


@dataclass(frozen=True)
class DecodeContext:
    """What a section's decoder may need from outside its payload."""

    height: int
    width: int
    slot_channels: tuple[int, ...] = field(default_factory=tuple)  # synthesis adapter slots' channels
    version: int = 0  # the file's format version (0: not known here)


class SectionModule(Protocol):
    TAG: int
    NAME: str
    FLAG: int
    SINCE_VERSION: int
    REQUIRED: bool
    MODES: tuple[str, ...]

    def encode(self, value: Any) -> bytes | None: ...

    def decode(self, payload: bytes, context: DecodeContext) -> Any: ...

    def describe(self, payload: bytes) -> dict: ...


# The bytes-only sections (an entropy coder elsewhere owns their meaning) share these.
def raw_encode(value: bytes | None) -> bytes | None:
    return value


def raw_decode(payload: bytes, context: DecodeContext) -> bytes:
    return payload


def raw_describe(payload: bytes) -> dict:
    return {"bytes": len(payload)}
