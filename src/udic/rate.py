"""Rates: the one place where a quality becomes the stored ``rate`` field and back.

A quality q is continuous in ``0 … R−1`` (R = the model's number of trained rates).
The file stores ``rate = round(q · RATE_UNIT)`` as a u16 (spec §2, §4); everything
that depends on the rate (the LoRA mix, the gains, λ) is computed from that stored
integer, so encoder, decoder and adaptation agree on the exact same fraction.
Validation and rounding happen here, once, in ``Rate.from_quality`` (user input)
and ``Rate.from_stored`` (a file's header).  Torch-free: the CLI checks ranges with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ContainerError, UsageError

RATE_UNIT = 256  # stored rate = quality · RATE_UNIT: fractions of 1/256 of a rate step
RATE_FIELD_LIMIT = 1 << 16  # the header's u16


def to_stored(quality: float) -> int:
    """The stored rate nearest ``quality`` (spec §4: ``rate = round(q · 256)``)."""
    return int(round(quality * RATE_UNIT))


def to_quality(stored: int) -> float:
    """The quality a stored rate means (an exact binary fraction)."""
    return stored / RATE_UNIT


def lora_key(index: int) -> str:
    """Name of the LoRA delta trained for rate ``index`` (``*.lora.<key>.A`` in weights files)."""
    return f"r{int(index)}"


def lora_index(key: str) -> int:
    """Inverse of ``lora_key``; ValueError for anything else."""
    if not key.startswith("r") or not key[1:].isdigit():
        raise ValueError(f"not a LoRA rate key: {key!r}")
    return int(key[1:])


def max_stored(num_rates: int) -> int:
    return (num_rates - 1) * RATE_UNIT


@dataclass(frozen=True)
class Rate:
    """A rate of a model with ``num_rates`` trained rates, as the file stores it."""

    stored: int
    num_rates: int

    def __post_init__(self) -> None:
        if self.num_rates < 1:
            raise ValueError("a model has at least one rate")
        if not 0 <= self.stored <= max_stored(self.num_rates):
            raise ValueError(f"stored rate {self.stored} out of range for {self.num_rates} rates")

    @classmethod
    def from_quality(cls, quality: float | "Rate", num_rates: int) -> "Rate":
        """Validate a user's quality (UsageError) and round it to the stored unit."""
        if isinstance(quality, Rate):
            if quality.num_rates != num_rates:
                raise UsageError(f"rate made for {quality.num_rates} rates, the model has {num_rates}")
            return quality
        if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not math.isfinite(quality):
            raise UsageError(f"quality must be a number, got {quality!r}")
        top = num_rates - 1
        if not 0 <= quality <= top:
            raise UsageError(f"quality {quality:g} out of range 0…{top:g}")
        return cls(to_stored(quality), num_rates)

    @classmethod
    def from_stored(cls, stored: int, num_rates: int) -> "Rate":
        """A file's rate field (ContainerError when the model has no such rate)."""
        if not 0 <= stored <= max_stored(num_rates):
            raise ContainerError(f"rate {to_quality(stored):g} out of range for this model")
        return cls(stored, num_rates)

    @classmethod
    def nearest(cls, quality: float, num_rates: int) -> "Rate":
        """The representable rate nearest ``quality``, clamped into range (searches that
        step past an end, e.g. rate control, land on the end)."""
        return cls(to_stored(min(max(float(quality), 0.0), float(num_rates - 1))), num_rates)

    @property
    def quality(self) -> float:
        return to_quality(self.stored)

    @property
    def max_quality(self) -> float:
        return float(self.num_rates - 1)

    @property
    def index(self) -> int:
        """i = ⌊q⌋: the trained rate at or below."""
        return self.stored // RATE_UNIT

    @property
    def fraction(self) -> float:
        """t = q − i, an exact binary fraction in [0, 1)."""
        return (self.stored % RATE_UNIT) / RATE_UNIT

    def lora_mix(self) -> dict[str, float]:
        """LoRA deltas and their weights (spec §4): W + (1 − t)·Δ_i + t·Δ_{i+1}."""
        i, t = self.index, self.fraction
        mix = {lora_key(i): 1.0 - t}
        if t > 0 and i + 1 < self.num_rates:
            mix[lora_key(i + 1)] = t
        return mix

    def rd_lambda(self, lambdas: tuple[float, ...] | list[float]) -> float:
        """λ at this rate: log λ interpolated between the two trained rates."""
        return interpolate_lambda(lambdas, self.quality)


def interpolate_lambda(lambdas: tuple[float, ...] | list[float], quality: float) -> float:
    """log λ interpolated between the two trained rates around ``quality``."""
    i = min(int(math.floor(quality)), len(lambdas) - 1)
    j = min(i + 1, len(lambdas) - 1)
    t = quality - i
    return math.exp((1 - t) * math.log(lambdas[i]) + t * math.log(lambdas[j]))
