"""Section 6: the per-image linear filter on the decoded pixels (spec §8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import DecodeContext

if TYPE_CHECKING:  # numpy-backed; imported on use so `udic info` stays light
    from ..loopfilter import LoopFilter

TAG = 6
NAME = "loop_filter"
FLAG = 8
SINCE_VERSION = 3
REQUIRED = False
MODES = ("learned",)  # the sections of a file coded by the learned transform


def encode(value: LoopFilter | None) -> bytes | None:
    from ..loopfilter import encode as encode_filter

    return encode_filter(value) if value is not None and not value.is_identity() else None


CLASSES_SINCE_VERSION = 8  # activity classes (container.FILTER_CLASSES_VERSION; kept literal: no container import)


def decode(payload: bytes, context: DecodeContext) -> LoopFilter:
    from ..loopfilter import decode as decode_filter

    return decode_filter(payload, classes_allowed=context.version >= CLASSES_SINCE_VERSION)


def describe(payload: bytes) -> dict:
    out: dict = {"bytes": len(payload)}
    if len(payload) >= 2:
        out["taps"], out["frac_bits"] = payload[0] & 0x7F, payload[1]
        out["classes"] = payload[8] if payload[0] & 0x80 and len(payload) > 8 else 1
    return out
