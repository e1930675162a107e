"""udic's networks: a mean-scale hyperprior with gain-unit rates and LoRA-capable convs.

Design notes (why, not what):
- The analysis/synthesis transforms are a linear 16×16 block transform (initialised
  from the PCA of training patches, so the model codes sensibly from step 0) plus a
  GDN residual network whose last layer starts at zero.  Training then only has to
  learn the *improvement* over a KLT codec, which converges far faster on a CPU.
- Rates are selected by per-channel gain vectors (Cui et al.) on the latents, and can
  additionally carry LoRA deltas on every conv.  Fractional rates interpolate gains.
- The hyper-synthesis that yields the entropy model's scales runs, at coding time,
  as an exact integer network (see ``IntegerHyperSynthesis``), so the probability
  tables are identical in every process, thread count and device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import math
from dataclasses import dataclass, field


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# compressai's two layers, re-implemented with the same state-dict keys and identical
# outputs (tests/test_nn.py checks them against compressai): importing compressai costs
# seconds (it pulls in its datasets), which every decode would pay.
from .nn import GDN, EntropyBottleneck

from .latent_codecs.registry import CHANNEL_CONTEXT_CODEC, DEFAULT_LATENT_CODEC
from .rate import Rate
from .layers import (
    AdapterSlot,
    LoRAConv2d,
    LoRAConvTranspose2d,
    conv,
    deconv,
    lora_layers,
)

# Scale grid for the latent entropy model, in the log-σ domain at 8 fractional bits:
# table index i covers log σ ≤ (SCALE_T0 + SCALE_STEP·i) / 2^8.  Integers, so the
# snapping of a (fixed-point) log-scale to an index is exact arithmetic.
FRAC_BITS = 8
SCALE_T0 = -565  # ≈ ln(0.11) · 256
SCALE_STEP = 32  # log-step 0.125
SCALE_LEVELS = 64
LOG_SCALE_MIN = SCALE_T0 / 2**FRAC_BITS
LOG_SCALE_MAX = (SCALE_T0 + SCALE_STEP * (SCALE_LEVELS - 1)) / 2**FRAC_BITS

# Reference λ for R + λ·255²·MSE, lowest rate first.
DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483)


def scale_table() -> np.ndarray:
    """σ of each table index (the largest σ the index covers)."""
    i = np.arange(SCALE_LEVELS, dtype=np.float64)
    return np.exp((SCALE_T0 + SCALE_STEP * i) / 2**FRAC_BITS)


class _LowerBoundFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        # Let gradients through where they push x back above the bound.
        passthrough = (x >= ctx.bound) | (grad < 0)
        return grad * passthrough, None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBoundFn.apply(x, bound)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def gaussian_likelihood(residual: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """P(round(v) = k) mass around ``residual`` under N(0, σ), in fp32."""
    v = residual.abs()
    inv = 1.0 / (sigma * math.sqrt(2.0))
    upper = 0.5 * torch.erfc((v - 0.5) * inv)
    lower = 0.5 * torch.erfc((v + 0.5) * inv)
    return lower_bound(upper - lower, 1e-9)


@dataclass
class ModelConfig:
    """Architecture hyper-parameters, stored in every weights file."""

    N: int = 128
    M: int = 192
    patch: int = 16
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    adapter_slots: tuple[int, ...] = field(default_factory=lambda: (0, 1, 2))
    # Which latent codec (udic.latent_codecs) codes the latents.  Written only when it is
    # not the default, so every weights file made before the seam keeps its bytes and id.
    latent_codec: str = DEFAULT_LATENT_CODEC
    # Channel-conditional codecs only: the latent channels of each slice, in coding order
    # (empty = ``channel_slices(M)``).
    slices: tuple[int, ...] = ()
    # The hyper-synthesis' hidden widths (0 = M and M·3/2, as every model before them).
    # A latent widened for high rates keeps a narrow hyper-synthesis: its cost at decode
    # grows with these, not with M.
    hyper_width: int = 0
    hyper_mid: int = 0

    def __post_init__(self) -> None:
        if self.latent_codec == CHANNEL_CONTEXT_CODEC and not self.slices:
            self.slices = channel_slices(self.M)
        if self.slices and sum(self.slices) != self.M:
            raise ValueError(f"slices {self.slices} do not add up to M={self.M}")

    @property
    def num_rates(self) -> int:
        return len(self.lambdas)

    @property
    def channel_context(self) -> bool:
        return self.latent_codec == CHANNEL_CONTEXT_CODEC

    def to_dict(self) -> dict:
        out = {
            "N": self.N,
            "M": self.M,
            "patch": self.patch,
            "lambdas": list(self.lambdas),
            "adapter_slots": list(self.adapter_slots),
        }
        if self.latent_codec != DEFAULT_LATENT_CODEC:
            out["latent_codec"] = self.latent_codec
        if self.slices:
            out["slices"] = list(self.slices)
        if self.hyper_width:
            out["hyper_width"] = self.hyper_width
        if self.hyper_mid:
            out["hyper_mid"] = self.hyper_mid
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(
            N=int(d["N"]),
            M=int(d["M"]),
            patch=int(d.get("patch", 16)),
            lambdas=tuple(float(v) for v in d["lambdas"]),
            adapter_slots=tuple(int(v) for v in d.get("adapter_slots", (0, 1, 2))),
            latent_codec=str(d.get("latent_codec", DEFAULT_LATENT_CODEC)),
            slices=tuple(int(v) for v in d.get("slices", ())),
            hyper_width=int(d.get("hyper_width", 0)),
            hyper_mid=int(d.get("hyper_mid", 0)),
        )


def initial_log_gains(lambdas: tuple[float, ...]) -> torch.Tensor:
    """High-rate optimum of the quantisation step for R + λ·255²·MSE (orthonormal basis)."""
    steps = [math.sqrt(36.0 / (2 * math.log(2) * lam * 255.0**2)) for lam in lambdas]
    return torch.tensor([-math.log(s) for s in steps], dtype=torch.float32)


class Analysis(nn.Module):
    def __init__(self, N: int, M: int, patch: int) -> None:
        super().__init__()
        self.linear = LoRAConv2d(3, M, patch, stride=patch)
        self.res = nn.Sequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)
        )
        nn.init.zeros_(self.res[-1].weight)
        nn.init.zeros_(self.res[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.res(x)


class Synthesis(nn.Module):
    """Inverse transform; adapter slots sit after each of the first three stages."""

    def __init__(self, N: int, M: int, patch: int) -> None:
        super().__init__()
        self.linear = LoRAConvTranspose2d(M, 3, patch, stride=patch)
        self.stages = nn.ModuleList(
            [
                nn.Sequential(deconv(M, N), GDN(N, inverse=True)),
                nn.Sequential(deconv(N, N), GDN(N, inverse=True)),
                nn.Sequential(deconv(N, N), GDN(N, inverse=True)),
            ]
        )
        self.slots = nn.ModuleList([AdapterSlot(N) for _ in range(3)])
        self.out = deconv(N, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = y
        for stage, slot in zip(self.stages, self.slots):
            h = slot(stage(h))
        return self.linear(y) + self.out(h)


def hyper_analysis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(conv(M, N, 3, 1), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, N))


def hyper_synthesis(N: int, M: int, width: int = 0, mid: int = 0) -> nn.Sequential:
    width = width or M
    mid = mid or M * 3 // 2
    return nn.Sequential(
        deconv(N, width), nn.ReLU(), deconv(width, mid), nn.ReLU(), conv(mid, 2 * M, 3, 1)
    )


def channel_slices(M: int) -> tuple[int, ...]:
    """ELIC's uneven groups scaled to M (16, 16, 32, 64, 192 of 320): small slices first,
    where the KLT-initialised analysis puts its highest-energy channels."""
    if M < 9:
        raise ValueError(f"a channel-conditional model needs M ≥ 9, got {M}")
    s = M // 16 if M >= 16 else 1
    return (s, s, 2 * s, 4 * s, M - 8 * s)


def slice_bounds(slices: tuple[int, ...]) -> list[tuple[int, int]]:
    """[start, end) channel range of every slice."""
    out, start = [], 0
    for c in slices:
        out.append((start, start + c))
        start += c
    return out


class ChannelContext(nn.Module):
    """Entropy parameters of slice k ≥ 1 from the hyper-synthesis' output and the decoded
    slices before it (He et al., ELIC; Minnen & Singh's channel-wise context).

    Each net is three 3×3 convs whose last layer starts at zero, and its output is added
    to the hyper-synthesis' parameters of the slice: a model made from a trained
    hyperprior codes exactly as that hyperprior until training moves it.  Slice 0 is
    coded with the hyper-synthesis' parameters alone.  Plain conv + ReLU stacks so the
    integer twin (``IntegerHyperSynthesis``) runs them exactly.
    """

    def __init__(self, M: int, slices: tuple[int, ...], width: int | None = None) -> None:
        super().__init__()
        self.M = M
        self.slices = tuple(slices)
        width = width or max(32, M // 2)
        self.nets = nn.ModuleList()
        for start, end in slice_bounds(self.slices)[1:]:
            net = nn.Sequential(conv(2 * M + start, width, 3, 1), nn.ReLU(), conv(width, width, 3, 1), nn.ReLU(),
                                conv(width, 2 * (end - start), 3, 1))
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)
            self.nets.append(net)

    def run(self, y: torch.Tensor, hyper_params: torch.Tensor, quantise,
            autocast: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Slice by slice: (log-scale per slice, mean per slice, ŷ of all slices).

        ``quantise(v, k)`` turns slice k's residual y − μ into what the decoder sees
        (rounding, its straight-through or SGA relaxation)."""
        M = self.M
        log_scales, means, y_hats = [], [], []
        for k, (start, end) in enumerate(slice_bounds(self.slices)):
            log_scale = hyper_params[:, start:end]
            mean = hyper_params[:, M + start:M + end]
            if k > 0:
                inp = torch.cat([hyper_params] + y_hats, dim=1)
                with torch.autocast(y.device.type, dtype=torch.bfloat16, enabled=autocast):
                    delta = self.nets[k - 1](inp)
                delta = delta.float()
                c = end - start
                log_scale = log_scale + delta[:, :c]
                mean = mean + delta[:, c:]
            y_hats.append(quantise(y[:, start:end] - mean, k) + mean)
            log_scales.append(log_scale)
            means.append(mean)
        return log_scales, means, torch.cat(y_hats, dim=1)


@dataclass
class ForwardResult:
    """Training-time outputs: reconstruction and per-sample rate terms."""

    x_hat: torch.Tensor
    y_bits: torch.Tensor  # (B,)
    z_bits: torch.Tensor  # (B,)


class UdicModel(nn.Module):
    """Mean-scale hyperprior with gain-unit rates; see the module docstring."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.g_a = Analysis(c.N, c.M, c.patch)
        self.g_s = Synthesis(c.N, c.M, c.patch)
        self.h_a = hyper_analysis(c.N, c.M)
        self.h_s = hyper_synthesis(c.N, c.M, c.hyper_width, c.hyper_mid)
        self.entropy_bottleneck = EntropyBottleneck(c.N)
        self.context = ChannelContext(c.M, c.slices) if c.channel_context else None
        log_gain = initial_log_gains(c.lambdas)
        self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, c.M).clone())
        self.log_inv_gain = nn.Parameter(-log_gain[:, None].repeat(1, c.M).clone())

    # ---- rate selection -------------------------------------------------------------
    def gains(self, rate: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and inverse gain for an integer or fractional rate (geometric interpolation)."""
        r = torch.as_tensor(rate, dtype=torch.float32, device=self.log_gain.device)
        r = r.clamp(0, self.config.num_rates - 1)
        lo = r.floor().long().clamp(max=self.config.num_rates - 1)
        hi = (lo + 1).clamp(max=self.config.num_rates - 1)
        t = (r - lo.float()).unsqueeze(-1)
        lg = self.log_gain[lo] * (1 - t) + self.log_gain[hi] * t
        lig = self.log_inv_gain[lo] * (1 - t) + self.log_inv_gain[hi] * t
        return lg.exp(), lig.exp()

    def lora_modules(self) -> list:
        return lora_layers(self)

    def lora_spec(self) -> dict[str, dict]:
        """``{"<layer>.<rate>": {"rank", "alpha"}}`` for every LoRA delta (stored in weights files)."""
        spec = {}
        for name, module in self.named_modules():
            lora = getattr(module, "lora", None)
            if isinstance(lora, nn.ModuleDict):
                for key, delta in lora.items():
                    spec[f"{name}.{key}"] = {"rank": delta.rank, "alpha": delta.alpha}
        return spec

    def merge_rate(self, rate: "int | Rate") -> None:
        """Merge the deltas of a rate (a ``Rate``, or its stored value) into every layer."""
        if not isinstance(rate, Rate):
            rate = Rate(int(rate), self.config.num_rates)
        mix = rate.lora_mix()
        for layer in self.lora_modules():
            layer.merge_mix(mix)

    def unmerge(self) -> None:
        for layer in self.lora_modules():
            layer.unmerge()

    # ---- training forward ---------------------------------------------------------
    def forward(
        self, x: torch.Tensor, rate: torch.Tensor, autocast: bool = False
    ) -> ForwardResult:
        device_type = x.device.type
        gain, inv_gain = self.gains(rate)
        gain = gain[:, :, None, None]
        inv_gain = inv_gain[:, :, None, None]
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            y = self.g_a(x)
        y = y.float() * gain
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            z = self.h_a(y)
        z = z.float()
        _, z_lik = self.entropy_bottleneck(z)
        z_hat = ste_round(z)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            params = self.h_s(z_hat)
        params = params.float()
        if self.context is not None:
            log_scales, means, y_hat = self.context.run(y, params, lambda v, k: ste_round(v), autocast)
            log_scale, mean = torch.cat(log_scales, dim=1), torch.cat(means, dim=1)
        else:
            log_scale, mean = params.chunk(2, dim=1)
            y_hat = ste_round(y - mean) + mean
        log_scale = lower_bound(log_scale, LOG_SCALE_MIN).clamp_max(LOG_SCALE_MAX)
        sigma = log_scale.exp()
        if self.training:
            y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_noisy = torch.round(y - mean) + mean
        y_lik = gaussian_likelihood(y_noisy - mean, sigma)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            x_hat = self.g_s(y_hat * inv_gain)
        x_hat = x_hat.float()
        y_bits = -torch.log2(y_lik).flatten(1).sum(1)
        z_bits = -torch.log2(z_lik).flatten(1).sum(1)
        return ForwardResult(x_hat=x_hat, y_bits=y_bits, z_bits=z_bits)

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()

    @torch.no_grad()
    def init_linear_from_patches(self, patches: torch.Tensor) -> None:
        """Set the block transform to the top-M eigenvectors of the patch second moment.

        ``patches``: (K, 3·p·p) in [0, 1].  Uncentred, so the DC basis is included.
        """
        c = self.config
        p = patches.double()
        cov = p.T @ p / p.shape[0]
        evals, evecs = torch.linalg.eigh(cov)
        basis = evecs[:, torch.argsort(evals, descending=True)[: c.M]].T  # (M, 3pp)
        w = basis.float().view(c.M, 3, c.patch, c.patch)
        self.g_a.linear.weight.copy_(w)
        self.g_a.linear.bias.zero_()
        self.g_s.linear.weight.copy_(w)  # ConvTranspose weight is (M, 3, p, p): the transpose
        self.g_s.linear.bias.zero_()


def z_bounds_from_bottleneck(eb: EntropyBottleneck) -> tuple[np.ndarray, np.ndarray]:
    """Integer support [lo, hi] per channel from the bottleneck's learned quantiles."""
    q = eb.quantiles.detach().double().cpu().numpy()[:, 0, :]  # (C, 3): lower, median, upper
    lo = np.floor(q[:, 0]).astype(np.int64)
    hi = np.ceil(q[:, 2]).astype(np.int64)
    hi = np.maximum(hi, lo)
    return lo, hi


@torch.no_grad()
def factorized_pmf_table(eb: EntropyBottleneck) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel pmf over integers in [lo, hi] plus an escape mass (last column).

    Computed once at export and stored in the weights file, so encoder and decoder
    read identical numbers instead of recomputing the density on their device.
    Returns (pmf (C, L+1) float64 padded with zeros, offsets (C, 2) = lo, length).
    """
    lo, hi = z_bounds_from_bottleneck(eb)
    C = lo.shape[0]
    L = int((hi - lo).max()) + 1
    pmf = np.zeros((C, L + 1), dtype=np.float64)
    for c in range(C):
        n = int(hi[c] - lo[c]) + 1
        k = torch.arange(lo[c], hi[c] + 1, dtype=torch.float32)
        grid = torch.zeros(C, 1, n)
        lower = torch.zeros(C, 1, n)
        grid[c, 0] = k + 0.5
        lower[c, 0] = k - 0.5
        lu = eb._logits_cumulative(grid, stop_gradient=True)[c, 0].double()
        ll = eb._logits_cumulative(lower, stop_gradient=True)[c, 0].double()
        sign = -torch.sign(lu + ll)
        p = (torch.sigmoid(sign * lu) - torch.sigmoid(sign * ll)).abs().numpy()
        tail = float(torch.sigmoid(ll[:1]).item() + torch.sigmoid(-lu[-1:]).item())
        pmf[c, :n] = p
        pmf[c, L] = max(tail, 1e-9)
    offsets = np.stack([lo, hi - lo + 1], axis=1)
    return pmf, offsets


def rate_mix(rate: int, num_rates: int) -> dict[str, float]:
    """Deprecated alias of ``Rate(rate, num_rates).lora_mix()`` (spec §4), kept while
    callers move to ``udic.rate``."""
    return Rate(int(rate), num_rates).lora_mix()


def haloed_bands(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, band_rows: int, halo: int,
                 upsample: int = 1) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``run(x)`` in horizontal bands of ``band_rows`` input rows, each computed with
    ``halo`` rows of context on both sides: (first output row, end row, rows).

    With exact integer arithmetic a band's core equals the same rows of ``run`` on the
    whole input, so memory stays bounded without changing a single value."""
    height = x.shape[-2]
    for top in range(0, height, band_rows):
        bottom = min(top + band_rows, height)
        lo, hi = max(top - halo, 0), min(bottom + halo, height)
        out = run(x[..., lo:hi, :])
        yield top * upsample, bottom * upsample, out[..., (top - lo) * upsample:(bottom - lo) * upsample, :]


class IntegerHyperSynthesis:
    """Exact fixed-point twin of ``h_s``: integer-valued float64 arithmetic.

    Activations carry ``FRAC_BITS`` fractional bits; each output channel's weights
    are scaled by its own power of two s_c (≤ 13 significant bits) and requantised
    with a floor division by 2^s_c.  Every partial sum stays below 2^47, so float64
    adds it exactly in any order: the result is independent of threads and device.
    """

    WEIGHT_BITS = 13
    ACT_LIMIT = 2**20

    def __init__(self, h_s: nn.Sequential, mix: dict[str, float] | None = None) -> None:
        self.layers: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, dict]] = []
        for module in h_s:
            if isinstance(module, (LoRAConv2d, LoRAConvTranspose2d)):
                w = module.merged_weight_float64(mix or {}).numpy()
                b = module.bias.detach().to("cpu", torch.float64).numpy()
                transposed = isinstance(module, LoRAConvTranspose2d)
                out_axis = 1 if transposed else 0
                w_oc = np.moveaxis(w, out_axis, 0).reshape(w.shape[out_axis], -1)
                maxabs = np.abs(w_oc).max(axis=1)
                shifts = np.array(
                    [self._shift(float(m)) for m in maxabs], dtype=np.int64
                )
                scale_shape = [1, 1, 1, 1]
                scale_shape[out_axis] = -1
                w_int = np.rint(w * np.ldexp(1.0, shifts).reshape(scale_shape))
                b_int = np.rint(b * np.ldexp(1.0, shifts + FRAC_BITS))
                meta = {
                    "stride": module.stride,
                    "padding": module.padding,
                    "output_padding": getattr(module, "output_padding", (0, 0)),
                }
                self.layers.append(
                    (
                        "deconv" if transposed else "conv",
                        torch.from_numpy(w_int),
                        torch.from_numpy(b_int),
                        torch.from_numpy(np.ldexp(1.0, shifts)),
                        meta,
                    )
                )
            elif isinstance(module, nn.ReLU):
                self.layers.append(("relu", torch.empty(0), torch.empty(0), torch.empty(0), {}))
            else:
                raise TypeError(f"unsupported layer in an integer network: {module}")

    @classmethod
    def _shift(cls, maxabs: float) -> int:
        if maxabs == 0.0:
            return 0
        _, exponent = math.frexp(maxabs)  # maxabs = m · 2^exponent, 0.5 ≤ m < 1
        return int(min(max(cls.WEIGHT_BITS - exponent, 0), 24))

    # Rows of hyper-latents each band adds on both sides: the two stride-2 deconvs and
    # the 3×3 conv see ±1.75 rows of z, and exact integer arithmetic makes a band's core
    # identical to the same rows of the whole-image result.
    BAND_HALO = 3
    UPSAMPLE = 4  # output rows per hyper-latent row

    @torch.no_grad()
    def bands(self, z_symbols: torch.Tensor, band_rows: int = 16) -> Iterator[tuple[int, int, torch.Tensor]]:
        """The output in horizontal bands: (first row, end row, rows) — bounded memory."""
        return haloed_bands(self, z_symbols, band_rows, self.BAND_HALO, self.UPSAMPLE)

    @torch.no_grad()
    def __call__(self, z_symbols: torch.Tensor) -> torch.Tensor:
        """Integer hyper-latents → fixed-point (2M channels, FRAC_BITS) integer tensor."""
        return self.fixed(z_symbols.to(device="cpu", dtype=torch.float64) * 2**FRAC_BITS)

    @torch.no_grad()
    def fixed(self, h: torch.Tensor) -> torch.Tensor:
        """Fixed-point input (integers, FRAC_BITS fractional bits) → fixed-point output.

        The channel context nets (``ChannelContext``) run through here with the same
        arithmetic as the hyper-synthesis."""
        h = h.to(device="cpu", dtype=torch.float64)  # always on the CPU
        h = h.clamp(-self.ACT_LIMIT, self.ACT_LIMIT)
        for kind, w, b, s, meta in self.layers:
            if kind == "relu":
                h = h.clamp_min(0)
                continue
            if kind == "conv":
                acc = F.conv2d(h, w, None, meta["stride"], meta["padding"])
            else:
                acc = F.conv_transpose2d(
                    h, w, None, meta["stride"], meta["padding"], meta["output_padding"]
                )
            acc = acc + b.view(1, -1, 1, 1)
            h = torch.floor(acc / s.view(1, -1, 1, 1))
            h = h.clamp(-self.ACT_LIMIT, self.ACT_LIMIT)
        return h.to(torch.int64).cpu()


def scale_indexes(log_scale_fixed: torch.Tensor) -> np.ndarray:
    """Snap fixed-point log-scales to table indices with integer comparisons only."""
    t = log_scale_fixed.numpy().astype(np.int64)
    idx = -((SCALE_T0 - t) // SCALE_STEP)  # ceil division on integers
    return np.clip(idx, 0, SCALE_LEVELS - 1).astype(np.int64)
