"""Per-image synthesis adapters: quantised weights and their section in the file.

An adapter r(h) = A·Bᵀ·h (rank ``rank``) sits in one of the synthesis slots.  Its
weights are integers k meaning k·w (bin width ``step``), coded under a quantised
logistic prior of scale ``scale`` (universal-dic: w = 0.06, s = 0.05).
"""

from __future__ import annotations

from functools import lru_cache

import struct
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import numpy as np

from .wire import Reader
from .entropy import IndexedCoder, logistic_table
from .errors import ContainerError

if TYPE_CHECKING:  # the section codec stays torch-free (udic info); install() needs torch
    import torch

DEFAULT_STEP = 0.06
DEFAULT_SCALE = 0.05
_FIXED = 1 << 12  # step and scale are stored as multiples of 2^-12
# Weight indices k (weight = k · step) are below this in magnitude (spec §6).  Why a bound: the
# table's escape reaches 2^62, and a forged file of weights near it decoded to overflowed (inf,
# NaN) pixels that both checksums passed.  At the default step 0.06 it is a weight of ~1,966.
MAX_WEIGHT_INDEX = (1 << 15) - 1


@dataclass
class Adapter:
    slot: int
    down: np.ndarray  # (rank, C) int64: Bᵀ in units of step
    up: np.ndarray  # (C, rank) int64: A in units of step

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])


@dataclass
class AdapterSet:
    step: float = DEFAULT_STEP
    scale: float = DEFAULT_SCALE
    adapters: list[Adapter] = field(default_factory=list)

    def num_weights(self) -> int:
        return sum(a.down.size + a.up.size for a in self.adapters)


def quantised_params(step: float, scale: float) -> tuple[int, int]:
    return int(round(step * _FIXED)), int(round(scale * _FIXED))


def params_in_range(step_q: int, scale_q: int) -> bool:
    """Spec §6: both positive, scale ≤ 64·step and step ≤ 256·scale (bounded table size)."""
    return step_q > 0 and scale_q > 0 and scale_q <= 64 * step_q and step_q <= 256 * scale_q


@lru_cache(maxsize=64)
def coder_for(step_q: int, scale_q: int) -> IndexedCoder:
    """Cached, as the loop filter's: a table is a Python loop over its symbols."""
    return IndexedCoder([logistic_table(scale_q / _FIXED, step_q / _FIXED)])


def encode_adapters(aset: AdapterSet) -> bytes:
    step_q, scale_q = quantised_params(aset.step, aset.scale)
    if not (step_q < 1 << 16 and scale_q < 1 << 16 and params_in_range(step_q, scale_q)):
        raise ValueError("adapter step/scale out of range")
    if not 0 < len(aset.adapters) < 256:
        raise ValueError("need 1…255 adapters")
    slots = [a.slot for a in aset.adapters]
    if slots != sorted(set(slots)) or not all(1 <= a.rank <= 64 for a in aset.adapters):
        raise ValueError("adapters need strictly increasing slots and ranks 1…64")
    out = bytearray([len(aset.adapters)])
    values = []
    for a in aset.adapters:
        out += bytes([a.slot, a.rank])
        values.append(a.down.ravel())
        values.append(a.up.ravel())
    out += struct.pack("<HH", step_q, scale_q)
    flat = np.concatenate(values).astype(np.int64)
    if flat.size and int(np.abs(flat).max()) > MAX_WEIGHT_INDEX:
        raise ValueError(f"adapter weight indices must be within ±{MAX_WEIGHT_INDEX}")
    out += coder_for(step_q, scale_q).encode(flat, np.zeros_like(flat))
    return bytes(out)


def decode_adapters(payload: bytes, slot_channels: list[int]) -> AdapterSet:
    reader = Reader(payload, len(payload))
    count = reader.take(1, "adapters")[0]
    if count == 0:
        raise ContainerError("corrupt adapters section (no adapters)")
    specs = []
    for _ in range(count):
        slot, rank = reader.take(2, "adapters")
        if slot >= len(slot_channels) or not 1 <= rank <= 64 or (specs and slot <= specs[-1][0]):
            raise ContainerError(f"corrupt adapters section (slot {slot}, rank {rank})")
        specs.append((slot, rank))
    step_q, scale_q = struct.unpack("<HH", reader.take(4, "adapters"))
    if not params_in_range(step_q, scale_q):
        raise ContainerError(f"corrupt adapters section (step {step_q}, scale {scale_q} out of range)")
    total = sum(2 * rank * slot_channels[slot] for slot, rank in specs)
    flat = coder_for(step_q, scale_q).decode(payload[reader.pos :], np.zeros(total, dtype=np.int64))
    if flat.size and int(np.abs(flat).max()) > MAX_WEIGHT_INDEX:
        raise ContainerError(f"corrupt adapters section (a weight index beyond ±{MAX_WEIGHT_INDEX})")
    adapters = []
    pos = 0
    for slot, rank in specs:
        c = slot_channels[slot]
        down = flat[pos : pos + rank * c].reshape(rank, c)
        pos += rank * c
        up = flat[pos : pos + rank * c].reshape(c, rank)
        pos += rank * c
        adapters.append(Adapter(slot=slot, down=down, up=up))
    return AdapterSet(step=step_q / _FIXED, scale=scale_q / _FIXED, adapters=adapters)


def install(synthesis_slots: "torch.nn.ModuleList", aset: AdapterSet | None, device: "torch.device") -> None:
    """Put dequantised adapter weights into the synthesis slots (or clear them)."""
    import torch

    for slot in synthesis_slots:
        slot.clear()
    if aset is None:
        return
    step_q, _ = quantised_params(aset.step, aset.scale)
    step = step_q / _FIXED
    for a in aset.adapters:
        down = torch.from_numpy(a.down.astype(np.float32) * step).to(device)
        up = torch.from_numpy(a.up.astype(np.float32) * step).to(device)
        synthesis_slots[a.slot].set(down, up)
