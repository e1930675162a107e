"""Section 128 (ancillary): the encoder's one-line account of the file's mode, e.g.
why a lossless file was written for a lossy request (spec §3, §11).  Ancillary: a
decoder may skip it, and nothing about the pixels depends on it."""

from __future__ import annotations

from .base import DecodeContext

TAG = 128
NAME = "note"
FLAG = 0
SINCE_VERSION = 1
REQUIRED = False
MODES = ("learned", "pixels")
MAX_NOTE_BYTES = 1024


def encode(value: str | None) -> bytes | None:
    if not value:
        return None
    data = value.encode("utf-8")
    if len(data) > MAX_NOTE_BYTES:  # cut at a character boundary
        data = data[:MAX_NOTE_BYTES].decode("utf-8", errors="ignore").encode("utf-8")
    return data


def decode(payload: bytes, context: DecodeContext) -> str:
    """The text, its first MAX_NOTE_BYTES bytes only (spec §3: bytes past them are ignored, as an
    ancillary section's content never makes a file invalid)."""
    return payload[:MAX_NOTE_BYTES].decode("utf-8", errors="replace")


def describe(payload: bytes) -> dict:
    return {"bytes": len(payload), "text": decode(payload, DecodeContext(height=1, width=1))}
