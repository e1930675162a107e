"""Section 3: per-image synthesis adapters (spec §6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ContainerError
from ..wire import Reader
from .base import DecodeContext

if TYPE_CHECKING:  # numpy-backed; imported on use so `udic info` stays light
    from ..adapters import AdapterSet

TAG = 3
NAME = "adapters"
FLAG = 1
SINCE_VERSION = 1
REQUIRED = False
MODES = ("learned",)  # the sections of a file coded by the learned transform


def encode(value: AdapterSet | None) -> bytes | None:
    from ..adapters import encode_adapters

    return encode_adapters(value) if value is not None and value.adapters else None


def decode(payload: bytes, context: DecodeContext) -> AdapterSet:
    from ..adapters import decode_adapters

    return decode_adapters(payload, list(context.slot_channels))


def describe(payload: bytes) -> dict:
    out: dict = {"bytes": len(payload)}
    try:
        reader = Reader(payload)
        count = reader.take(1, "adapters")[0]
        out["adapters"] = [dict(zip(("slot", "rank"), reader.take(2, "adapters"))) for _ in range(count)]
    except ContainerError:
        pass  # info shows what it can; decoding reports the damage
    return out
