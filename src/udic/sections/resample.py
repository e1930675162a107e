"""Section 9: reduced resolution, the network codes a 2×-downsampled image and the
decoder upsamples it with a fixed integer filter (spec §12, ``udic.resample``)."""

from __future__ import annotations

from ..errors import ContainerError
from .base import DecodeContext

TAG = 9
NAME = "resample"
FLAG = 64
SINCE_VERSION = 7
REQUIRED = False
MODES = ("learned",)  # the sections of a file coded by the learned transform

FACTOR = 2  # the only factor of this format version (numpy-free here; udic.resample re-exports it)
FILTER_CUBIC = 0
FILTER_NAMES = {FILTER_CUBIC: "cubic"}


def coded_size(height: int, width: int, factor: int = FACTOR) -> tuple[int, int]:
    """The size the network codes for an output of ``height`` × ``width`` (spec §12)."""
    return -(-height // factor), -(-width // factor)


def encode(value: int | None) -> bytes | None:
    """``value``: the factor (2), or None for a full-resolution file."""
    if value is None:
        return None
    if value != FACTOR:
        raise ValueError(f"resample factor must be {FACTOR}")
    return bytes([value, FILTER_CUBIC])


def decode(payload: bytes, context: DecodeContext) -> int:
    """The factor; a factor or filter this version does not define is refused."""
    if len(payload) != 2:
        raise ContainerError("resample section must be 2 bytes")
    factor, kind = payload[0], payload[1]
    if factor != FACTOR:
        raise ContainerError(f"unsupported resample factor {factor}")
    if kind not in FILTER_NAMES:
        raise ContainerError(f"unsupported resample filter {kind}")
    return factor


def describe(payload: bytes) -> dict:
    out: dict = {"bytes": len(payload)}
    if len(payload) == 2:
        out["factor"] = payload[0]
        out["filter"] = FILTER_NAMES.get(payload[1], f"unknown ({payload[1]})")
    return out
