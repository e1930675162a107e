"""The channel-conditional latent codec (spec §5.3): the latents are coded in slices of
channels, and each slice's entropy parameters are the hyper-synthesis' plus an integer
context network's correction computed from the slices decoded before it (ELIC's uneven
channel groups, without the spatial checkerboard).

Everything that decides a probability runs as exact integer arithmetic — the
hyper-synthesis and every context net go through ``IntegerHyperSynthesis.fixed`` — so
the decoder rebuilds identical tables in any process, thread count or device.  The
decoded latents the context nets see are fixed-point numbers ``r·2^8 + μ_fixed``, exact
by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..container import CHANNEL_CONTEXT_VERSION
from ..errors import ContainerError
from .base import EntropyParams, LatentDecoding, LatentEncoding, Quantise, check_fits_int32, crc_integers
from .hyperprior import MeanScaleHyperprior
from .registry import CHANNEL_CONTEXT_CODEC, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..entropy import SegmentDecoder, Table
    from ..models import IntegerHyperSynthesis, ModelConfig

# Latent rows per band of a context net's integer evaluation, and the rows of halo each
# band reads on both sides (three 3×3 convs): a band's core equals the whole-image result.
CONTEXT_BAND_ROWS = 64
CONTEXT_HALO = 3


@dataclass
class IntegerChannelNetworks:
    """The exact networks of one rate: the hyper-synthesis and one net per slice ≥ 1."""

    hyper: "IntegerHyperSynthesis"
    context: list["IntegerHyperSynthesis"]


@register
class ChannelContextCodec(MeanScaleHyperprior):
    name = CHANNEL_CONTEXT_CODEC
    min_version = CHANNEL_CONTEXT_VERSION

    def __init__(self, config: "ModelConfig", z_tables: list["Table"], entropy_bottleneck: "nn.Module",
                 hyper_synthesis: "nn.Module", context: "nn.Module | None" = None) -> None:
        super().__init__(config, z_tables, entropy_bottleneck, hyper_synthesis)
        if context is None:
            raise ValueError("the channel-context codec needs the model's context networks")
        self.context = context  # the float ChannelContext, for the encoder's estimates

    @classmethod
    def from_model(cls, config: "ModelConfig", z_tables: list["Table"], model: "nn.Module") -> "ChannelContextCodec":
        return cls(config, z_tables, model.entropy_bottleneck, model.h_s, context=model.context)

    def integer_networks(self, model: "nn.Module", mix: dict[str, float]) -> IntegerChannelNetworks:
        from ..models import IntegerHyperSynthesis

        return IntegerChannelNetworks(IntegerHyperSynthesis(model.h_s, mix),
                                      [IntegerHyperSynthesis(net, mix) for net in model.context.nets])

    # ---- exact parameters, slice by slice ---------------------------------------------------
    def _hyper_fixed(self, z_symbols: np.ndarray, nets: IntegerChannelNetworks) -> "torch.Tensor":
        """The hyper-synthesis' fixed-point output (2M, h, w) as int32 (values ≤ 2^20)."""
        import torch

        _, zh, zw = z_symbols.shape
        k = nets.hyper.UPSAMPLE
        out = torch.empty((2 * self.config.M, zh * k, zw * k), dtype=torch.int32)
        for top, bottom, fixed in nets.hyper.bands(torch.from_numpy(np.ascontiguousarray(z_symbols))[None]):
            out[:, top:bottom] = fixed[0].to(torch.int32)
        return out

    @staticmethod
    def _context_fixed(net: "IntegerHyperSynthesis", hyper_fixed: "torch.Tensor",
                       decoded: "torch.Tensor") -> "torch.Tensor":
        """One context net on [hyper output, decoded slices] in haloed bands of rows."""
        import torch

        from ..models import haloed_bands

        inp = torch.cat([hyper_fixed.to(torch.float64), decoded.to(torch.float64)])
        out: torch.Tensor | None = None
        for top, bottom, band in haloed_bands(lambda t: net.fixed(t[None])[0], inp, CONTEXT_BAND_ROWS, CONTEXT_HALO):
            if out is None:
                out = torch.empty((band.shape[0],) + tuple(hyper_fixed.shape[1:]), dtype=torch.int64)
            out[:, top:bottom] = band
        assert out is not None
        return out

    def _code_slices(self, z_symbols: np.ndarray, nets: IntegerChannelNetworks, y: np.ndarray | None = None,
                     stream: "SegmentDecoder | None" = None) -> tuple[np.ndarray, EntropyParams]:
        """Residuals and parameters of every slice in coding order: from ``y`` (encoder)
        or from ``stream`` (decoder), each slice's parameters from the slices before it."""
        import torch

        from ..models import FRAC_BITS, scale_indexes, slice_bounds

        M = self.config.M
        hyper_fixed = self._hyper_fixed(z_symbols, nets)
        _, h, w = hyper_fixed.shape
        residuals = np.empty((M, h, w), dtype=np.int64)
        indexes = np.empty((M, h, w), dtype=np.int64)
        means = torch.empty((M, h, w), dtype=torch.float32)
        decoded = torch.empty((M, h, w), dtype=torch.int64)  # r·2^8 + μ_fixed
        for k, (start, end) in enumerate(slice_bounds(self.config.slices)):
            log_scale = hyper_fixed[start:end].to(torch.int64)
            mean_fixed = hyper_fixed[M + start:M + end].to(torch.int64)
            if k > 0:
                delta = self._context_fixed(nets.context[k - 1], hyper_fixed, decoded[:start])
                c = end - start
                log_scale = log_scale + delta[:c]
                mean_fixed = mean_fixed + delta[c:]
            idx = scale_indexes(log_scale)
            mean = (mean_fixed.to(torch.float64) / 2**FRAC_BITS).to(torch.float32)
            if stream is not None:
                r = stream.next(idx).reshape(idx.shape)
                check_fits_int32(r)
            elif y is not None:
                r = np.rint(y[start:end] - mean.numpy()).astype(np.int64)
            else:
                raise ValueError("the channel-context parameters depend on the latents: pass y")
            residuals[start:end], indexes[start:end], means[start:end] = r, idx, mean
            decoded[start:end] = torch.from_numpy(r) * 2**FRAC_BITS + mean_fixed
        return residuals, EntropyParams(indexes, means)

    def entropy_params(self, z_symbols: np.ndarray, hyper: IntegerChannelNetworks,
                       y: np.ndarray | None = None) -> EntropyParams:
        return self._code_slices(z_symbols, hyper, y=y)[1]

    def _segments(self, residuals: np.ndarray, indexes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        from ..models import slice_bounds

        return [(residuals[a:b], indexes[a:b]) for a, b in slice_bounds(self.config.slices)]

    def encode(self, y: np.ndarray, z_symbols: np.ndarray, hyper: IntegerChannelNetworks) -> LatentEncoding:
        import torch

        residuals, params = self._code_slices(z_symbols, hyper, y=y)
        return LatentEncoding(
            z_bytes=self.encode_hyper(z_symbols),
            y_bytes=self.y_coder.encode_segments(self._segments(residuals, params.indexes)),
            crc=crc_integers(z_symbols, residuals),
            y_hat=torch.from_numpy(residuals.astype(np.float32)) + params.means,
        )

    def decode(self, z_bytes: bytes, y_bytes: bytes, z_shape: tuple[int, int, int],
               y_shape: tuple[int, int, int], hyper: IntegerChannelNetworks, crc: int) -> LatentDecoding:
        import torch

        self.check_capacity(z_bytes, y_bytes, z_shape, y_shape)
        z_symbols = self.decode_hyper(z_bytes, z_shape)
        check_fits_int32(z_symbols)
        stream = self.y_coder.decode_segments(y_bytes)
        residuals, params = self._code_slices(z_symbols, hyper, stream=stream)
        stream.finish()
        if crc_integers(z_symbols, residuals) != crc:
            raise ContainerError(
                "decoded latents fail their checksum (file damaged, or decoded with a different model build)"
            )
        return LatentDecoding(z_symbols, residuals, torch.from_numpy(residuals.astype(np.float32)) + params.means)

    # ---- differentiable estimates ----------------------------------------------------------
    def relaxed_latents(self, y: "torch.Tensor", params: "torch.Tensor",
                        quantise: Quantise) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        from ..models import LOG_SCALE_MAX, LOG_SCALE_MIN, gaussian_likelihood, lower_bound

        log_scales, means, y_hat = self.context.run(y, params, lambda v, k: quantise(v))
        log_scale = lower_bound(torch.cat(log_scales, dim=1), LOG_SCALE_MIN).clamp_max(LOG_SCALE_MAX)
        mean = torch.cat(means, dim=1)
        bits = -torch.log2(gaussian_likelihood(y_hat - mean, log_scale.exp()))
        return bits, y_hat
