"""The latent-codec seam: "latents ↔ bytes, given the hyper-latents" (as CompressAI's
``LatentCodec``).

A latent codec owns everything between the analysis output and the two entropy-coded
sections: the symbol order, the entropy parameters, the latent CRC, a bound on what a
payload can hold (checked before decoding allocates anything), and a differentiable
bit estimate for the encoder's refinements (SGA, RDOQ).  ``Codec`` hands it the
per-rate integer hyper-synthesis, so it never calls back into ``Codec``.

Adding a latent codec = one subclass registered with ``@register``; a weights file
names it in its config (``latent_codec``, absent = the mean-scale hyperprior).
"""

from __future__ import annotations

import math
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..entropy import IndexedCoder, Table
from ..errors import ContainerError

if TYPE_CHECKING:  # torch only where the work needs it
    import torch
    from torch import nn

    from ..models import IntegerHyperSynthesis, ModelConfig

Quantise = Callable[["torch.Tensor"], "torch.Tensor"]  # rounding, or its relaxation (SGA)

# constriction quantises every pmf to 24-bit fixed point and gives every symbol at least
# one unit (``perfect=False``).
ANS_PRECISION = 24
ANS_WORD_BITS = 32
# A valid stream of W words holds at most 32·W + ANS_SLACK_BITS bits of information
# (the coder's 64-bit head is part of the words; the margin covers its initial state).
ANS_SLACK_BITS = 128
# An ANS step with quantised probability f/2^24 grows the state by at least this
# fraction of its ideal log2(2^24/f) (the floor in x → ⌊x/f⌋·2^24 + … loses < 2^-8
# relative with a state ≥ 2^32); 0.9 keeps a wide margin.
ANS_EFFICIENCY = 0.9


def min_bits_per_symbol(table: Table) -> float:
    """A lower bound on the bits any single symbol coded under ``table`` costs.

    The most probable symbol's quantised probability is at most its float probability
    plus the quantisation's rounding (each symbol moves by less than (n+1)/2^24), and at
    most 1 − (n−1)/2^24 because every other symbol keeps at least one unit.
    """
    pmf = np.asarray(table.pmf, dtype=np.float64)
    pmf = pmf / pmf.sum()
    n = len(pmf)
    unit = 2.0**-ANS_PRECISION
    p_max = min(float(pmf.max()) + (n + 1) * unit, 1.0 - (n - 1) * unit)
    return -math.log2(p_max)


def stream_can_hold(payload: bytes, min_bits: float) -> bool:
    """Whether an ANS stream of these bytes can possibly decode symbols that need at
    least ``min_bits`` bits of information in all (a sound, cheap bound)."""
    capacity = ANS_WORD_BITS * (len(payload) // 4) + ANS_SLACK_BITS
    return ANS_EFFICIENCY * min_bits <= capacity


def crc_integers(*arrays: np.ndarray) -> int:
    """CRC-32 of integer arrays as int32 little-endian in C order (spec §2 latent_crc)."""
    crc = 0
    for a in arrays:
        if a.size and np.abs(a).max() >= 2**31:
            raise ValueError("latent values must fit in 32 bits (spec §2)")
        crc = zlib.crc32(np.ascontiguousarray(a, dtype="<i4").tobytes(), crc)
    return crc


@dataclass
class LatentEncoding:
    """What the encoder writes and what the decoder will reconstruct."""

    z_bytes: bytes  # the hyperlatents section
    y_bytes: bytes  # the latents section
    crc: int  # the header's latent_crc
    y_hat: "torch.Tensor"  # (M, h, w) float32: the latents the decoder reconstructs (gained domain)


@dataclass
class LatentDecoding:
    z_symbols: np.ndarray  # (N, h/4, w/4) int64
    residuals: np.ndarray  # (M, h, w) int64: the coded integers of the latents
    y_hat: "torch.Tensor"  # (M, h, w) float32


@dataclass
class EntropyParams:
    """The exact integer-derived parameters the latents are coded with."""

    indexes: np.ndarray  # (M, h, w) int64 table index of every latent
    means: "torch.Tensor"  # (M, h, w) float32 value the coded integer is relative to


class LatentCodec(ABC):
    """Latents ↔ bytes given the hyper-latents.  See the module docstring."""

    name: ClassVar[str]
    # The lowest container version whose decoders know this codec (spec §2).
    min_version: ClassVar[int] = 4

    @classmethod
    def from_model(cls, config: "ModelConfig", z_tables: list[Table], model: "nn.Module") -> "LatentCodec":
        """The codec of a loaded model (its float networks serve the encoder's estimates)."""
        return cls(config, z_tables, model.entropy_bottleneck, model.h_s)

    def integer_networks(self, model: "nn.Module", mix: dict[str, float]) -> "IntegerHyperSynthesis":
        """The exact integer networks of one rate, handed to every coding call."""
        from ..models import IntegerHyperSynthesis

        return IntegerHyperSynthesis(model.h_s, mix)

    def __init__(self, config: "ModelConfig", z_tables: list[Table], entropy_bottleneck: "nn.Module",
                 hyper_synthesis: "nn.Module") -> None:
        self.config = config
        self.z_coder = IndexedCoder(z_tables)
        # The float networks, for the encoder's differentiable estimates only; the exact
        # integer hyper-synthesis is handed to every coding call.
        self.entropy_bottleneck = entropy_bottleneck
        self.hyper_synthesis = hyper_synthesis
        self._z_min_bits = np.array([min_bits_per_symbol(t) for t in z_tables])

    # ---- hyper-latents (shared by the hyperprior family) ---------------------------------
    def encode_hyper(self, z_symbols: np.ndarray) -> bytes:
        """Element (c, i, j) under table c (spec §5.1)."""
        z_idx = np.broadcast_to(np.arange(z_symbols.shape[0])[:, None, None], z_symbols.shape)
        return self.z_coder.encode(z_symbols, z_idx)

    def decode_hyper(self, z_bytes: bytes, z_shape: tuple[int, int, int]) -> np.ndarray:
        z_idx = np.broadcast_to(np.arange(z_shape[0])[:, None, None], z_shape)
        return self.z_coder.decode(z_bytes, z_idx).reshape(z_shape)

    def check_capacity(self, z_bytes: bytes, y_bytes: bytes, z_shape: tuple[int, int, int],
                       y_shape: tuple[int, int, int]) -> None:
        """Refuse sections that cannot hold the symbols the header's size implies, before
        anything of that size is allocated (spec §9 step 3)."""
        self.check_hyper_capacity(z_bytes, z_shape)
        self.check_latent_capacity(y_bytes, y_shape)

    def check_hyper_capacity(self, z_bytes: bytes, z_shape: tuple[int, int, int]) -> None:
        """Each position of channel c costs at least the bound of table c; summed over
        channels this is tens of bits per hyper-latent position for trained models."""
        _, zh, zw = z_shape
        if not stream_can_hold(z_bytes, zh * zw * float(self._z_min_bits.sum())):
            raise ContainerError(f"hyperlatents section ({len(z_bytes)} bytes) is far too small for a "
                                 f"{zh * 64}x{zw * 64} image: the header's size is not the coded one")

    def check_latent_capacity(self, y_bytes: bytes, y_shape: tuple[int, int, int]) -> None:
        y_min = self.min_latent_bits(y_shape)
        if not stream_can_hold(y_bytes, y_min):
            raise ContainerError(f"latents section ({len(y_bytes)} bytes) is far too small for "
                                 f"{math.prod(y_shape)} latents: the header's size is not the coded one")

    # ---- the latents: what a new latent codec provides ------------------------------------
    @abstractmethod
    def min_latent_bits(self, y_shape: tuple[int, int, int]) -> float:
        """A lower bound on the information in any latents section of this shape."""

    @abstractmethod
    def entropy_params(self, z_symbols: np.ndarray, hyper: "IntegerHyperSynthesis",
                       y: np.ndarray | None = None) -> EntropyParams:
        """Table indexes and means of every latent, exactly, from the integer networks.

        A context model's parameters depend on the latents coded before; it takes them
        from ``y`` (the encoder's gained latents, rounded as ``encode`` rounds them)."""

    @abstractmethod
    def encode(self, y: np.ndarray, z_symbols: np.ndarray, hyper: "IntegerHyperSynthesis") -> LatentEncoding:
        """Gained latents y (M×h×w float) and hyper-latent symbols → both sections."""

    @abstractmethod
    def decode(self, z_bytes: bytes, y_bytes: bytes, z_shape: tuple[int, int, int],
               y_shape: tuple[int, int, int], hyper: "IntegerHyperSynthesis", crc: int) -> LatentDecoding:
        """Both sections → the latents; refuses a CRC mismatch (ContainerError)."""

    @abstractmethod
    def symbol_bits(self, residuals: np.ndarray, params: EntropyParams) -> np.ndarray:
        """Ideal code length of every coded integer (RDOQ's rate term)."""

    # ---- differentiable estimates (encoder-side refinement) -------------------------------
    def hyper_bits(self, z: "torch.Tensor") -> "torch.Tensor":
        """Bits of (relaxed-)rounded hyper-latents z (1, N, h, w) under the factorized prior."""
        import torch

        from ..models import lower_bound

        n = z.shape[1]
        # compressai's density with its parameters frozen (stop_gradient), as in training.
        lik, _, _ = self.entropy_bottleneck._likelihood(z.permute(1, 0, 2, 3).reshape(n, 1, -1),
                                                         stop_gradient=True)
        return -torch.log2(lower_bound(lik, 1e-9)).sum()

    def float_params(self, z_hat: "torch.Tensor") -> "torch.Tensor":
        """The float hyper-synthesis' entropy parameters (differentiable in z_hat)."""
        return self.hyper_synthesis(z_hat).float()

    @abstractmethod
    def relaxed_latents(self, y: "torch.Tensor", params: "torch.Tensor",
                        quantise: Quantise) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(bits of every latent, ŷ) with ``quantise`` standing in for the rounding."""


def check_fits_int32(*arrays: np.ndarray) -> None:
    for values in arrays:
        if values.size and np.abs(values).max() >= 2**31:
            raise ContainerError("corrupt data: a decoded latent does not fit in 32 bits")
