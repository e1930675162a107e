"""The mean-scale hyperprior (spec §5.2): every latent coded, table by table, as the
integer residual from its mean under a zero-mean Gaussian of its scale."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..entropy import IndexedCoder, gaussian_tables
from .base import (
    EntropyParams,
    LatentCodec,
    LatentDecoding,
    LatentEncoding,
    Quantise,
    check_fits_int32,
    crc_integers,
    min_bits_per_symbol,
)
from .registry import register

if TYPE_CHECKING:
    import torch

    from ..models import IntegerHyperSynthesis


@register
class MeanScaleHyperprior(LatentCodec):
    name = "mean-scale-hyperprior"

    def __init__(self, *args, **kwargs) -> None:
        from ..models import scale_table

        super().__init__(*args, **kwargs)
        tables = gaussian_tables(tuple(scale_table()))
        self.y_coder = IndexedCoder(tables)
        self._y_min_bits = min(min_bits_per_symbol(t) for t in tables)

    def min_latent_bits(self, y_shape: tuple[int, int, int]) -> float:
        return float(np.prod(y_shape)) * self._y_min_bits

    def entropy_params(self, z_symbols: np.ndarray, hyper: "IntegerHyperSynthesis",
                       y: np.ndarray | None = None) -> EntropyParams:
        """Computed in bands of rows (exactly equal to the whole-image result) so a huge
        image never holds the 2M-channel fixed-point output at once."""
        import torch

        from ..models import FRAC_BITS, scale_indexes

        M = self.config.M
        _, h, w = z_symbols.shape
        k = hyper.UPSAMPLE
        indexes = np.empty((M, h * k, w * k), dtype=np.int64)
        means = torch.empty((M, h * k, w * k), dtype=torch.float32)
        for top, bottom, fixed in hyper.bands(torch.from_numpy(z_symbols)[None]):
            indexes[:, top:bottom] = scale_indexes(fixed[0, :M])
            means[:, top:bottom] = (fixed[0, M:].to(torch.float64) / 2**FRAC_BITS).to(torch.float32)
        return EntropyParams(indexes, means)

    def encode(self, y: np.ndarray, z_symbols: np.ndarray, hyper: "IntegerHyperSynthesis") -> LatentEncoding:
        import torch

        params = self.entropy_params(z_symbols, hyper)
        residuals = np.rint(y - params.means.numpy()).astype(np.int64)
        return LatentEncoding(
            z_bytes=self.encode_hyper(z_symbols),
            y_bytes=self.y_coder.encode(residuals, params.indexes),
            crc=crc_integers(z_symbols, residuals),
            y_hat=torch.from_numpy(residuals.astype(np.float32)) + params.means,
        )

    def decode(self, z_bytes: bytes, y_bytes: bytes, z_shape: tuple[int, int, int],
               y_shape: tuple[int, int, int], hyper: "IntegerHyperSynthesis", crc: int) -> LatentDecoding:
        import torch

        from ..errors import ContainerError

        self.check_capacity(z_bytes, y_bytes, z_shape, y_shape)
        z_symbols = self.decode_hyper(z_bytes, z_shape)
        params = self.entropy_params(z_symbols, hyper)
        residuals = self.y_coder.decode(y_bytes, params.indexes).reshape(y_shape)
        check_fits_int32(z_symbols, residuals)
        if crc_integers(z_symbols, residuals) != crc:
            raise ContainerError(
                "decoded latents fail their checksum (file damaged, or decoded with a different model build)"
            )
        return LatentDecoding(z_symbols, residuals, torch.from_numpy(residuals.astype(np.float32)) + params.means)

    def symbol_bits(self, residuals: np.ndarray, params: EntropyParams) -> np.ndarray:
        return self.y_coder.symbol_bits(residuals, params.indexes)

    def relaxed_latents(self, y: "torch.Tensor", params: "torch.Tensor",
                        quantise: Quantise) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        from ..models import LOG_SCALE_MAX, LOG_SCALE_MIN, gaussian_likelihood, lower_bound

        log_scale, mean = params.chunk(2, dim=1)
        r = quantise(y - mean)
        log_scale = lower_bound(log_scale, LOG_SCALE_MIN).clamp_max(LOG_SCALE_MAX)
        bits = -torch.log2(gaussian_likelihood(r, log_scale.exp()))
        return bits, r + mean
