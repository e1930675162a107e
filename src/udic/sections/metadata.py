"""Section 7: EXIF and XMP of the source image (spec §10)."""

from __future__ import annotations

from ..errors import ContainerError
from ..metadata import Metadata
from ..metadata import decode as decode_metadata
from ..metadata import encode as encode_metadata
from .base import DecodeContext

TAG = 7
NAME = "metadata"
FLAG = 16
SINCE_VERSION = 4
REQUIRED = False
MODES = ("learned", "pixels")


def encode(value: Metadata | None) -> bytes | None:
    return encode_metadata(value) if value else None


def decode(payload: bytes, context: DecodeContext) -> Metadata:
    return decode_metadata(payload)


def describe(payload: bytes) -> dict:
    out: dict = {"bytes": len(payload)}
    try:
        meta = decode_metadata(payload)
    except ContainerError:
        return out
    out["exif_bytes"] = len(meta.exif or b"")
    out["xmp_bytes"] = len(meta.xmp or b"")
    return out
