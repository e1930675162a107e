"""Section 4: the lossless alpha plane (spec §7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import DecodeContext

if TYPE_CHECKING:  # numpy/constriction-backed; imported on use so `udic info` stays light
    import numpy as np

TAG = 4
NAME = "alpha"
FLAG = 2
SINCE_VERSION = 1
REQUIRED = False
MODES = ("learned",)  # the sections of a file coded by the learned transform


def encode(value: np.ndarray | None) -> bytes | None:
    from ..alpha import encode_alpha

    return encode_alpha(value) if value is not None else None


def decode(payload: bytes, context: DecodeContext) -> np.ndarray:
    from ..alpha import decode_alpha

    return decode_alpha(payload, context.height, context.width)


def describe(payload: bytes) -> dict:
    return {"bytes": len(payload)}
