"""Section 3: per-image synthesis adapters (spec §6)."""

from __future__ import annotations

from ..adapters import AdapterSet, decode_adapters, encode_adapters
from ..errors import ContainerError
from ..wire import Reader
from .base import DecodeContext

TAG = 3
NAME = "adapters"
FLAG = 1
SINCE_VERSION = 1
REQUIRED = False
MODES = ("learned",)  # the sections of a file coded by the learned transform


def encode(value: AdapterSet | None) -> bytes | None:
    return encode_adapters(value) if value is not None and value.adapters else None


def decode(payload: bytes, context: DecodeContext) -> AdapterSet:
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
