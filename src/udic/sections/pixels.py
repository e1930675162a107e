"""Section 8: the image's samples coded exactly or within ±max_error by the integer
pixel coder (``udic.lossless``; spec §11).  A file with this section is *pixel coded*:
it has no latents, needs no model, and its header's ``latent_crc`` is the CRC-32 of the
decoded samples."""

from __future__ import annotations

from .base import DecodeContext, raw_encode

TAG = 8
NAME = "pixels"
FLAG = 32
SINCE_VERSION = 5
REQUIRED = True  # in a pixel-coded file
MODES = ("pixels",)


encode = raw_encode


def decode(payload: bytes, context: DecodeContext) -> bytes:
    return payload  # decoded by udic.pixelcodec, which checks the samples' CRC


def describe(payload: bytes) -> dict:
    from .. import lossless
    from ..errors import ContainerError

    out: dict = {"bytes": len(payload)}
    try:
        out.update(lossless.describe(payload))
    except ContainerError as exc:
        out["error"] = str(exc)
    return out
