"""Section 5: the source's ICC profile, zlib-compressed, at most 16 MiB inflated,
nothing after the zlib stream (spec §3)."""

from __future__ import annotations

import zlib

from ..wire import inflate_section
from .base import DecodeContext

TAG = 5
NAME = "icc"
FLAG = 4
SINCE_VERSION = 1
REQUIRED = False
MODES = ("learned", "pixels")
MAX_ICC_BYTES = 16 << 20


def inflate_icc(payload: bytes) -> bytes:
    """zlib-inflate an ICC section, refusing more than MAX_ICC_BYTES (no zlib bombs)."""
    return inflate_section(payload, MAX_ICC_BYTES, "ICC")


def encode(value: bytes | None) -> bytes | None:
    """A profile over the limit is not carried (the decoder could not take it back)."""
    return zlib.compress(value, 9) if value and len(value) <= MAX_ICC_BYTES else None


def decode(payload: bytes, context: DecodeContext) -> bytes:
    return inflate_icc(payload)


def describe(payload: bytes) -> dict:
    return {"bytes": len(payload)}
