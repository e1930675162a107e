"""Content-adaptive encoding: per-image latent refinement and synthesis adapters.

The decoder never changes.  The encoder spends extra compute to find, for *this*
image, (1) latents y, z that lower R + λ·D through the frozen decoder of the chosen
rate (stochastic Gumbel annealing, Yang, Bamler & Mandt 2020), then (2) a small
low-rank adapter in one synthesis slot, sent in the file (universal-dic).

Every candidate is judged by its *actual* coded size and the *actual* decoded
pixels, and the cheapest of {plain, refined latents, refined latents + adapters}
is returned, so adaptation can never make a file worse in RD terms.

CPU budget is the hard constraint (the papers use ~2,500 passes per image on a GPU),
so the presets use few iterations with a high, decaying learning rate, bf16 autocast
for the synthesis (likelihoods stay in fp32), a reused synthesis prefix for the
adapter phase, and early stopping once the (smoothed) RD cost stops improving.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import adapters as adapters_mod
from . import loopfilter
from .adapters import DEFAULT_SCALE, DEFAULT_STEP, Adapter, AdapterSet
from .codec import Codec, EncodeResult
from .effort import DEFAULT_EFFORT, MAX_EFFORT, PRESETS, describe_effort, preset  # noqa: F401 (re-exported)
from .geometry import LATENT_STRIDE, PAD_MULTIPLE, SYNTHESIS_HALO, choose_tile
from .imageio import LoadedImage, crop, pad_to_multiple
from .models import lower_bound, ste_round
from .rate import Rate, interpolate_lambda
from .tiling import Window, tile_windows

_LIKELIHOOD_FLOOR = 1e-9

# The candidate names: the steps that made it, in order ("none" = the plain encode).
Chosen = str
Progress = Callable[[str, int, int, float], None]


@dataclass(frozen=True)
class AdaptConfig:
    """How hard to try.  Build with ``AdaptConfig.for_effort(n, **overrides)``."""

    effort: int = DEFAULT_EFFORT
    iterations: int = 0  # latent-refinement iterations (0 = skip)
    lr: float = 0.0  # Adam lr on the gained latents (units of quantisation bins)
    lr_final_ratio: float = 0.1  # lr decays exponentially to lr · ratio
    t0: int = 0  # SGA: τ stays at tau_max until iteration t0 …
    decay: float = math.log(5.0)  # … then τ(t) = tau_max · exp(−decay · (t − t0))
    tau_max: float = 0.5
    rdoq: bool = True  # rate-distortion optimised rounding of the latents
    rdoq_scales: tuple[float, ...] = (2.0, 3.0)  # distortion weights tried (each one real encode)
    loop_filter: bool = True  # fit and send a linear filter on the decoded pixels if it pays
    filter_shapes: tuple[tuple[int, int], ...] = ((1, 8), (3, 8), (5, 8), (1, 10), (3, 10), (5, 10))  # (k, F)
    # Activity-class splits tried on the chosen (k, F): thresholds kept out of the 7 that cut
    # the pixels into 8 equal groups (2, 4 and 8 classes); () = one filter for every pixel.
    filter_classes: tuple[tuple[int, ...], ...] = ((3,), (1, 3, 5), (0, 1, 2, 3, 4, 5, 6))
    adapter_steps: int = 0  # adapter optimisation steps (0 = no adapters)
    adapter_lr: float = 0.0
    rank: int = 2
    slot: int = 1  # after the second synthesis stage (1/4 resolution)
    step: float = DEFAULT_STEP  # adapter weight bin width w
    scale: float = DEFAULT_SCALE  # logistic prior scale s
    init_std: float = 0.02
    patience: int = 8  # iterations without improvement of the smoothed cost
    stop_after: float = 0.5  # early stopping only in the second half: SGA's cost rises while τ is high
    min_improvement: float = 1e-4  # relative improvement that counts
    bf16: bool = True  # autocast the synthesis (forward and backward) to bf16
    seed: int = 0
    time_budget: float | None = None  # seconds for the whole adaptation, None = no limit

    @classmethod
    def for_effort(cls, effort: int = DEFAULT_EFFORT, **overrides: object) -> "AdaptConfig":
        """Preset for ``effort`` 0…MAX_EFFORT, with ``overrides`` for any field.

        The τ schedule and patience follow the (possibly overridden) iteration count,
        so τ anneals from 0.5 to ≈0.1 over whatever length the run has.
        """
        row = preset(effort)  # validates (UsageError)
        iterations = int(overrides.get("iterations", row.sga_steps))  # type: ignore[call-overload]
        t0 = iterations // 5
        fields: dict[str, object] = {
            "effort": effort,
            "iterations": iterations,
            "lr": row.sga_lr,
            "t0": t0,
            "decay": math.log(5.0) / max(iterations - t0, 1),
            "adapter_steps": row.adapter_steps,
            "adapter_lr": row.adapter_lr,
            "rdoq": row.rdoq,
            "loop_filter": row.loop_filter,
            "patience": max(8, iterations // 5),
        }
        fields.update(overrides)
        return cls(**fields)  # type: ignore[arg-type]

    def tau(self, t: int) -> float:
        return min(self.tau_max, self.tau_max * math.exp(-self.decay * (t - self.t0)))


@dataclass
class AdaptResult:
    data: bytes
    chosen: Chosen
    rd_before: float  # actual bpp + λ·MSE₂₅₅ of the plain encode
    rd_after: float  # the same for the returned file
    bits: dict[str, int]  # hyper, latent, adapters, total (coded sizes)
    iterations: int  # latent iterations run
    adapter_iterations: int
    seconds: float
    candidates: dict[str, float] = field(default_factory=dict)  # actual cost of each tried
    encode: EncodeResult | None = None  # the chosen encode (header, notices)
    mse: float = math.nan  # the chosen file's decoded RGB against the source's (8-bit scale)


# ---- SGA ---------------------------------------------------------------------------------


def sga_round(
    v: torch.Tensor, tau: float, generator: torch.Generator | None = None, hard: bool = False
) -> torch.Tensor:
    """Stochastic Gumbel annealing: a relaxed two-way choice between ⌊v⌋ and ⌈v⌉.

    Logits −atanh(v−⌊v⌋)/τ and −atanh(⌈v⌉−v)/τ, Gumbel-softmax at temperature τ
    (Yang et al. 2020).  ``hard`` returns exactly ⌊v⌋ or ⌈v⌉ with the soft gradient.
    """
    eps = 1e-5
    lo = torch.floor(v)
    hi = torch.ceil(v)
    logits = torch.stack(
        [
            -torch.atanh((v - lo).clamp(-1 + eps, 1 - eps)) / tau,
            -torch.atanh((hi - v).clamp(-1 + eps, 1 - eps)) / tau,
        ],
        dim=-1,
    )
    u = torch.rand(logits.shape, generator=generator, dtype=v.dtype).to(v.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7)))
    probs = torch.softmax((logits + gumbel) / tau, dim=-1)
    if hard:
        one_hot = F.one_hot(probs.argmax(-1), 2).to(probs.dtype)
        probs = probs + (one_hot - probs).detach()
    return lo * probs[..., 0] + hi * probs[..., 1]


# ---- helpers -----------------------------------------------------------------------------


def rd_lambda(codec: Codec, quality: "float | Rate") -> float:
    """λ of a fractional rate: log λ interpolated between the two trained rates."""
    q = quality.quality if isinstance(quality, Rate) else quality
    return interpolate_lambda(codec.config.lambdas, q)


class _Stopper:
    """Early stopping on an EMA of the (noisy) stochastic RD cost."""

    def __init__(self, patience: int, min_improvement: float) -> None:
        self.patience = patience
        self.min_improvement = min_improvement
        self.ema: float | None = None
        self.best = math.inf
        self.stale = 0

    def update(self, value: float) -> bool:
        """Record ``value``; True when it is time to stop."""
        self.ema = value if self.ema is None else 0.8 * self.ema + 0.2 * value
        if self.ema < self.best * (1 - self.min_improvement):
            self.best = self.ema
            self.stale = 0
        else:
            self.stale += 1
        return self.stale >= self.patience


@contextmanager
def _frozen(codec: Codec) -> Iterator[None]:
    """Freeze every parameter (the codec has merged the rate's deltas); undo it after."""
    model = codec.model
    saved_grad = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved_grad:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in saved_grad:
            p.requires_grad_(flag)
        for slot in model.g_s.slots:
            slot.clear()


@dataclass
class _Latents:
    """Latents a candidate was coded from, so later steps can build on the best one."""

    name: str
    z: np.ndarray
    y: np.ndarray
    y_hat: torch.Tensor
    cost: float


@dataclass
class _Candidate:
    name: Chosen
    encode: EncodeResult
    cost: float
    adapter_bits: int
    rgb: np.ndarray | None = field(default=None, repr=False)  # the decoded pixels (kept for the best only)
    latents: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # (z symbols, y)
    adapters: AdapterSet | None = None
    mse: float = math.nan  # of the decoder's exact pixels against the source's RGB


def _evaluate(
    codec: Codec,
    image: LoadedImage,
    rate: Rate,
    lam: float,
    z_symbols: np.ndarray,
    y: np.ndarray,
    aset: AdapterSet | None,
    name: Chosen,
    effort: int,
    tile: int,
) -> tuple[_Candidate, torch.Tensor]:
    """Code for real and reconstruct exactly as the decoder would; returns (candidate, ŷ)."""
    enc = codec.encode(image, rate, aset, latents=(z_symbols, y), tile=tile, effort=effort, keep_latents=True)
    assert enc.y_hat is not None
    y_hat = enc.y_hat
    enc.y_hat = None  # candidates are kept; their latents are not needed after this
    height, width = image.rgb.shape[:2]
    rgb = crop(codec.synthesise(y_hat, rate, aset, tile=tile), height, width)
    mse = decoded_mse(image, rgb)
    cost = 8 * len(enc.data) / (height * width) + lam * mse
    adapter_bits = 0
    if aset is not None and aset.adapters:
        adapter_bits = 8 * len(adapters_mod.encode_adapters(aset))
    return _Candidate(name, enc, cost, adapter_bits, rgb, (z_symbols, y), aset, mse), y_hat


def decoded_mse(image: LoadedImage, rgb: np.ndarray) -> float:
    """MSE of the decoder's output against the source, per sample: RGB for a colour source; for
    a gray one the luma the decoder writes (Pillow's RGB → L, exactly), since colour error in the
    synthesis never reaches that file and must not buy a loop filter or adapter its bytes."""
    if image.mode == "L":
        wide = rgb.astype(np.int64)
        luma = (19595 * wide[..., 0] + 38470 * wide[..., 1] + 7471 * wide[..., 2] + 0x8000) >> 16
        return float(np.mean((luma - image.rgb[..., 0].astype(np.int64)).astype(np.float64) ** 2))
    return float(np.mean((rgb.astype(np.float64) - image.rgb.astype(np.float64)) ** 2))


def _masked_mse(x_hat: torch.Tensor, x: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
    """MSE over the pixels that count (the real image, or a tile's core; never the padding)."""
    return (x_hat.float()[..., rows, cols] - x[..., rows, cols]).pow(2).mean()


def _lr_at(t: int, total: int, lr: float, ratio: float) -> float:
    return lr * ratio ** (t / max(total - 1, 1))


def _optimise(
    opt: torch.optim.Optimizer,
    steps: int,
    lr: float,
    cfg: AdaptConfig,
    deadline: float,
    loss_at: Callable[[int], torch.Tensor],
    report: Callable[[int, float], None] | None,
) -> int:
    """The loop every phase shares: decaying lr, deadline, progress, early stop."""
    stopper = _Stopper(cfg.patience, cfg.min_improvement)
    done = 0
    for t in range(steps):
        if time.perf_counter() >= deadline:
            break
        for group in opt.param_groups:
            group["lr"] = _lr_at(t, steps, lr, cfg.lr_final_ratio)
        loss = loss_at(t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
        value = float(loss.detach())
        if report is not None:
            report(done, value)
        if stopper.update(value) and t + 1 >= cfg.stop_after * steps:
            break
    return done


# ---- phase 1: latents ------------------------------------------------------------------


def _refine_latents(
    codec: Codec,
    x: torch.Tensor,
    y0: np.ndarray,
    q: float,
    lam: float,
    height: int,
    width: int,
    cfg: AdaptConfig,
    generator: torch.Generator,
    deadline: float,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """SGA + Adam on (y, z) for bits/pixel + λ·255²·MSE; returns (z symbols, y, iterations)."""
    model = codec.model
    device = codec.device
    _, inv_gain = model.gains(q)
    inv_gain = inv_gain.detach().to(device).view(1, -1, 1, 1)
    y_init = torch.from_numpy(y0).to(device)[None]
    with torch.no_grad():
        z_init = model.h_a(y_init.contiguous(memory_format=torch.channels_last)).float()
    y_var = torch.nn.Parameter(y_init.clone().contiguous())
    z_var = torch.nn.Parameter(z_init.clone().contiguous())
    opt = torch.optim.Adam([y_var, z_var], lr=cfg.lr)
    latent_codec = codec.latent_codec
    pixels = float(height * width)
    d_weight = lam * 255.0**2
    rows, cols = slice(0, height), slice(0, width)

    def loss_at(t: int) -> torch.Tensor:
        tau = cfg.tau(t)
        z_t = sga_round(z_var, tau, generator)
        z_bits = latent_codec.hyper_bits(z_t)
        y_bits, y_hat = latent_codec.relaxed_latents(y_var, latent_codec.float_params(z_t),
                                                     lambda v: sga_round(v, tau, generator))
        y_bits = y_bits.sum()
        y_in = (y_hat * inv_gain).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            x_hat = model.g_s(y_in)
        return (y_bits + z_bits) / pixels + d_weight * _masked_mse(x_hat, x, rows, cols)

    report = None if progress is None else (lambda done, value: progress("latents", done, cfg.iterations, value))
    done = _optimise(opt, cfg.iterations, cfg.lr, cfg, deadline, loss_at, report)
    y_out = y_var.detach()[0].float().cpu().numpy()
    z_out = torch.round(z_var.detach())[0].to("cpu", torch.int64).numpy()
    return z_out, y_out, done


def _refine_latents_tiled(
    codec: Codec,
    padded: np.ndarray,
    y0: np.ndarray,
    z_symbols: np.ndarray,
    q: float,
    lam: float,
    height: int,
    width: int,
    tile: int,
    cfg: AdaptConfig,
    generator: torch.Generator,
    deadline: float,
    progress: Progress | None,
) -> tuple[np.ndarray, int]:
    """SGA on y, one synthesis tile at a time, with the hyper-latents fixed.

    Each tile's window is the decoder's (core + halo); only the core's latents move,
    the halo holds the neighbours' current latents, and the loss counts the core's
    bits and the core's real pixels, so memory stays that of one window.
    """
    model = codec.model
    device = codec.device
    latent_codec = codec.latent_codec
    _, inv_gain = model.gains(q)
    inv_gain = inv_gain.detach().to(device).view(1, -1, 1, 1)
    y_full = torch.from_numpy(y0).to(device)[None].clone()
    with torch.no_grad():
        z = torch.from_numpy(z_symbols).to(device, torch.float32)[None]
        params_full = latent_codec.float_params(z)
    d_weight = lam * 255.0**2
    windows = tile_windows(y_full.shape[2], y_full.shape[3], tile // LATENT_STRIDE, SYNTHESIS_HALO)
    total = cfg.iterations * len(windows)
    done_total = 0
    for index, win in enumerate(windows):
        remaining = len(windows) - index
        # Share what is left of the time evenly between the tiles still to do.
        tile_deadline = deadline if not math.isfinite(deadline) else (
            time.perf_counter() + (deadline - time.perf_counter()) / remaining)
        rows, cols = win.outer_slices()
        core_rows, core_cols = win.core_in_outer()
        mask = torch.zeros_like(y_full[:, :1, rows, cols])
        mask[..., core_rows, core_cols] = 1
        params = params_full[:, :, rows, cols]
        # Real pixels of the core, in window coordinates.
        pix_rows, pix_cols = win.visible_in_outer(LATENT_STRIDE, height, width)
        if pix_rows.stop <= pix_rows.start or pix_cols.stop <= pix_cols.start:
            continue  # a tile of padding only
        x = codec.image_tensor(padded[win.outer_slices(LATENT_STRIDE)])
        pixels = float((pix_rows.stop - pix_rows.start) * (pix_cols.stop - pix_cols.start))
        y_var = torch.nn.Parameter(y_full[:, :, rows, cols].clone().contiguous())
        y_var.register_hook(lambda g, m=mask: g * m)
        opt = torch.optim.Adam([y_var], lr=cfg.lr)

        def loss_at(t: int, y_var=y_var, params=params, mask=mask, x=x,
                    pix_rows=pix_rows, pix_cols=pix_cols, pixels=pixels) -> torch.Tensor:
            tau = cfg.tau(t)
            bits, y_hat = latent_codec.relaxed_latents(y_var, params, lambda v: sga_round(v, tau, generator))
            y_bits = (bits * mask).sum()
            y_in = (y_hat * inv_gain).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                x_hat = model.g_s(y_in)
            return y_bits / pixels + d_weight * _masked_mse(x_hat, x, pix_rows, pix_cols)

        offset = done_total

        def report(done: int, value: float, offset: int = offset) -> None:
            if progress is not None:
                progress("latents", offset + done, total, value)

        done_total += _optimise(opt, cfg.iterations, cfg.lr, cfg, tile_deadline, loss_at, report)
        with torch.no_grad():
            y_full[:, :, rows, cols][..., core_rows, core_cols] = y_var.detach()[..., core_rows, core_cols]
        if time.perf_counter() >= deadline:
            break
    return y_full[0].float().cpu().numpy(), done_total


# ---- phase 1b: rate-distortion optimised quantisation -------------------------------------


def rdoq_latents(codec: Codec, y: np.ndarray, z_symbols: np.ndarray, q: float, lam: float,
                 distortion_scales: Sequence[float]) -> list[np.ndarray]:
    """Round each latent residual towards zero where that lowers bits + λ·distortion.

    The residual r = round(y − μ) may instead be coded as r − sign(r), which is always
    cheaper under the zero-mean Gaussian.  Its distortion is estimated through the
    synthesis' linear (KLT) part: a unit change of channel c moves the pixels by
    inv_gain_c·‖w_c‖.  The residual network amplifies this somewhat, which each
    distortion scale (> 1) accounts for; the caller picks one by real encodes.
    Returns, per scale, latents whose rounding gives the chosen residuals; the
    entropy model and the bit costs are computed once for all scales.
    """
    params = codec.entropy_params(z_symbols, y)
    mu = params.means.numpy().astype(np.float64)
    v = y.astype(np.float64) - mu
    r = np.rint(v)
    toward_zero = r - np.sign(r)
    w = codec.model.g_s.linear.weight.detach().to("cpu", torch.float64)
    energy = (w**2).sum(dim=(1, 2, 3)).numpy()
    _, inv_gain = codec.model.gains(q)
    per_unit = (inv_gain.detach().to("cpu", torch.float64).numpy() ** 2 * energy)[:, None, None]
    bits = codec.latent_codec.symbol_bits
    d_bits = bits(toward_zero.astype(np.int64), params) - bits(r.astype(np.int64), params)
    # Cost per image: bits + λ·255²·SSE/3 (MSE over the three channels, pixels in [0, 1]).
    d_dist_unscaled = lam * 255.0**2 / 3 * per_unit * ((v - toward_zero) ** 2 - (v - r) ** 2)
    out = []
    for scale in distortion_scales:
        chosen = np.where((r != 0) & (d_bits + scale * d_dist_unscaled < 0), toward_zero, r)
        out.append((mu + chosen).astype(np.float32))
    return out


# ---- phase 2: adapters -----------------------------------------------------------------


def _logistic_bits(w: torch.Tensor, step: float, scale: float, noise: torch.Tensor) -> torch.Tensor:
    """Bits of weights under the quantised logistic, with uniform noise standing in for rounding."""
    k = (w / step + noise).abs()  # symmetric prior: use |k| for a stable difference
    upper = torch.sigmoid((-k + 0.5) * step / scale)
    lower = torch.sigmoid((-k - 0.5) * step / scale)
    return -torch.log2(lower_bound(upper - lower, _LIKELIHOOD_FLOOR)).sum()


@dataclass
class _View:
    """A piece of the image the adapter is fitted on: latents, target, pixels that count."""

    y_hat: torch.Tensor  # (1, C, h, w) quantised latents (before the inverse gain)
    x: torch.Tensor  # (1, 3, 16h, 16w) target
    rows: slice
    cols: slice
    window: Window | None = None  # the tile it is, for a tiled image


def _fit_adapter(
    codec: Codec,
    views: list[_View],
    q: float,
    lam: float,
    image_pixels: int,
    cfg: AdaptConfig,
    generator: torch.Generator,
    deadline: float,
    progress: Progress | None,
) -> tuple[AdapterSet | None, int]:
    """Optimise one rank-r adapter in ``cfg.slot`` for adapter bits/pixel + λ·255²·MSE.

    The adapter is sent once per image, so its bits are spread over all its pixels
    while the distortion is the mean over the views (the whole image, or a sample of
    tiles).  Mixed quantisation: straight-through rounding to the bin grid on the
    decoder path, uniform noise on the rate path.  The synthesis up to the slot does
    not depend on the adapter, so it runs once per view.
    """
    model = codec.model
    g_s = model.g_s
    device = codec.device
    if not 0 <= cfg.slot < len(g_s.slots):
        raise ValueError(f"adapter slot must be 0…{len(g_s.slots) - 1}, got {cfg.slot}")
    step_q, scale_q = adapters_mod.quantised_params(cfg.step, cfg.scale)
    step, scale = step_q / 4096, scale_q / 4096  # exactly what the file will carry
    _, inv_gain = model.gains(q)
    inv_gain = inv_gain.to(device).view(1, -1, 1, 1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    for s in g_s.slots:
        s.clear()
    prefixes: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad(), autocast:
        for view in views:
            y_in = (view.y_hat.to(device) * inv_gain).contiguous(memory_format=torch.channels_last)
            h = y_in
            for k in range(cfg.slot + 1):
                h = g_s.stages[k](h)
                if k < cfg.slot:
                    h = g_s.slots[k](h)
            prefixes.append((h.detach(), g_s.linear(y_in).detach()))

    def suffix(h: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
        h = g_s.slots[cfg.slot](h)
        for k in range(cfg.slot + 1, len(g_s.stages)):
            h = g_s.slots[k](g_s.stages[k](h))
        return linear + g_s.out(h)

    channels = g_s.slots[cfg.slot].channels
    down = torch.nn.Parameter((torch.randn(cfg.rank, channels, generator=generator) * cfg.init_std).to(device))
    up = torch.nn.Parameter((torch.randn(channels, cfg.rank, generator=generator) * cfg.init_std).to(device))
    opt = torch.optim.Adam([down, up], lr=cfg.adapter_lr)
    d_weight = lam * 255.0**2

    def loss_at(t: int) -> torch.Tensor:
        g_s.slots[cfg.slot].set(ste_round(down / step) * step, ste_round(up / step) * step)
        mse = torch.zeros((), device=device)
        for view, (prefix, linear) in zip(views, prefixes):
            with autocast:
                x_hat = suffix(prefix, linear)
            mse = mse + _masked_mse(x_hat, view.x, view.rows, view.cols)
        n_down = (torch.rand(down.shape, generator=generator) - 0.5).to(device)
        n_up = (torch.rand(up.shape, generator=generator) - 0.5).to(device)
        bits = _logistic_bits(down, step, scale, n_down) + _logistic_bits(up, step, scale, n_up)
        return bits / image_pixels + d_weight * mse / len(views)

    report = None if progress is None else (lambda done, value: progress("adapters", done, cfg.adapter_steps, value))
    try:
        done = _optimise(opt, cfg.adapter_steps, cfg.adapter_lr, cfg, deadline, loss_at, report)
    finally:
        g_s.slots[cfg.slot].clear()
    bound = adapters_mod.MAX_WEIGHT_INDEX  # (the file's limit; no fitted adapter comes near it)
    k_down = torch.round(down.detach() / step).clamp(-bound, bound).to("cpu", torch.int64).numpy()
    k_up = torch.round(up.detach() / step).clamp(-bound, bound).to("cpu", torch.int64).numpy()
    if done == 0 or not (k_down.any() and k_up.any()):
        return None, done  # a zero factor makes the adapter the identity: nothing to send
    aset = AdapterSet(step=step, scale=scale, adapters=[Adapter(slot=cfg.slot, down=k_down, up=k_up)])
    return aset, done


MAX_ADAPTER_TILES = 4  # tiles an adapter of a tiled image is fitted on


def _adapter_views(codec: Codec, padded: np.ndarray, y_hat: torch.Tensor, height: int, width: int,
                   tile: int) -> list[_View]:
    """The whole image, or for a tiled image a spread-out sample of its (haloed) tiles."""
    if not tile:
        x = codec.image_tensor(padded)
        return [_View(y_hat[None], x, slice(0, height), slice(0, width))]

    windows = tile_windows(y_hat.shape[1], y_hat.shape[2], tile // LATENT_STRIDE, SYNTHESIS_HALO)
    windows = [w for w in windows if w.core[0] * LATENT_STRIDE < height and w.core[2] * LATENT_STRIDE < width]
    if len(windows) > MAX_ADAPTER_TILES:
        pick = np.linspace(0, len(windows) - 1, MAX_ADAPTER_TILES).round().astype(int)
        windows = [windows[i] for i in pick]
    views = []
    for win in windows:
        latent_rows, latent_cols = win.outer_slices()
        rows, cols = win.visible_in_outer(LATENT_STRIDE, height, width)
        views.append(_View(y_hat[None, :, latent_rows, latent_cols],
                           codec.image_tensor(padded[win.outer_slices(LATENT_STRIDE)]), rows, cols, win))
    return views


# ---- phase 3: loop filter ----------------------------------------------------------------


def _fit_loop_filter(codec: Codec, image: LoadedImage, rate: Rate, lam: float, best: _Candidate,
                     cfg: AdaptConfig, tile: int, deadline: float = math.inf) -> _Candidate | None:
    """The least-squares loop filter on the best candidate's pixels, at the cheapest (k, F).

    No network passes: one Gram matrix, a few small solves and filter applications;
    the section's exact size decides between shapes, then one real encode confirms.  Past
    ``deadline`` the activity classes are not tried, and after the shapes no filter is sent.
    """
    if best.rgb is None or best.latents is None or not cfg.filter_shapes:
        return None
    height, width = image.rgb.shape[:2]
    pixels = height * width
    normal = loopfilter.normal_equations(image.rgb, best.rgb, max(k for k, _ in cfg.filter_shapes))
    # Shapes are compared on the fitted rows (all of them, or a sample of a huge image).
    bands = loopfilter.sample_bands(height, width)
    sse, n = loopfilter.squared_error(image.rgb, best.rgb, None, bands)
    chosen: tuple[float, loopfilter.LoopFilter] | None = None
    shapes = [lf for lf in (loopfilter.fit(normal, k, frac_bits) for k, frac_bits in cfg.filter_shapes)
              if not lf.is_identity()]
    for lf, (sse_k, _) in zip(shapes, loopfilter.squared_errors(image.rgb, best.rgb, shapes, bands)):
        # The filter's bits (+ ~2 bytes of section tag and length) plus λ·MSE on the
        # sampled rows; the unfiltered file's is the bar.
        cost = (8 * len(loopfilter.encode(lf)) + 16) / pixels + lam * sse_k / (3 * n)
        if cost < (lam * sse / (3 * n) if chosen is None else chosen[0]):
            chosen = (cost, lf)
    if chosen is None or time.perf_counter() >= deadline:
        return None
    chosen = _class_split(image.rgb, best.rgb, chosen, lam, pixels, bands, cfg.filter_classes, normal)
    if time.perf_counter() >= deadline:
        return None
    lf = chosen[1]
    enc = codec.encode(image, rate, best.adapters, latents=best.latents, tile=tile,
                       effort=best.encode.header.effort, loop_filter=lf)
    mse = decoded_mse(image, loopfilter.apply(best.rgb, lf))
    cost = 8 * len(enc.data) / pixels + lam * mse
    name = "filter" if best.name == "none" else f"{best.name}+filter"
    return _Candidate(name, enc, cost, best.adapter_bits, None, best.latents, best.adapters, mse)


def _class_split(original: np.ndarray, decoded: np.ndarray, chosen: tuple[float, loopfilter.LoopFilter], lam: float,
                 pixels: int, bands: list[tuple[int, int]], splits: tuple[tuple[int, ...], ...],
                 normal: loopfilter.Normal) -> tuple[float, loopfilter.LoopFilter]:
    """The chosen filter, or the same (k, F) with activity classes where they pay for their
    bytes (one pass over the image for the finest split; coarser ones merge its statistics)."""
    fine = loopfilter.activity_thresholds(decoded, loopfilter.MAX_CLASSES)
    usable = [keep for keep in splits if keep and max(keep) < len(fine)]
    if not usable:
        return chosen
    base = chosen[1]
    classes = loopfilter.class_normal_equations(original, decoded, base.k, fine, normal)
    split_filters = [loopfilter.fit_classes(loopfilter.merge_classes(classes, keep), base.frac_bits) for keep in usable]
    for lf, (sse, n) in zip(split_filters, loopfilter.squared_errors(original, decoded, split_filters, bands)):
        cost = (8 * len(loopfilter.encode(lf)) + 16) / pixels + lam * sse / (3 * n)
        if cost < chosen[0]:
            chosen = (cost, lf)
    return chosen


# ---- entry point -------------------------------------------------------------------------

FILTER_COST_OF_EVALUATION = 2.0  # the loop filter's time ÷ one plain evaluation's (an estimate)


def _torch_seed(seed: int) -> int:
    """Any integer --seed as one torch accepts (−2⁶³ … 2⁶⁴ − 1, kept as it is; others wrapped:
    seed + 1 of the largest had overflowed after the refinement's work)."""
    return seed if -(1 << 63) <= seed < 1 << 64 else seed % (1 << 64)



def adapt_encode(
    codec: Codec,
    image: LoadedImage,
    quality: "float | Rate",
    config: AdaptConfig,
    progress: Progress | None = None,
    tile: int | None = None,
) -> AdaptResult:
    """Encode ``image`` with per-image adaptation; the file is never worse in RD cost.

    ``progress(phase, step, total, rd_cost)`` is called after every iteration
    (phase "latents" or "adapters", stochastic cost in bpp + λ·MSE₂₅₅), once per
    evaluated candidate (phase "evaluate", actual cost of the coded file) and per
    analysed tile of a tiled image (phase "tiles").  ``tile`` as in ``Codec.encode``:
    a tiled image refines its latents tile by tile and fits one adapter, shared by
    all tiles, on a sample of them.
    """
    with _deterministic_cuda(codec.device):
        return _adapt_encode(codec, image, quality, config, progress, tile)


@contextmanager
def _deterministic_cuda(device: torch.device) -> Iterator[None]:
    """On CUDA, cuDNN's deterministic kernels for the refinement's and the adapter fit's backward
    passes too (the synthesis asks for them itself): otherwise `--seed` would not fix a GPU
    encode.  On the CPU these passes are already deterministic at a given thread count."""
    if device.type != "cuda":
        yield
        return
    from .codec import deterministic_cuda

    with deterministic_cuda():  # (counted: parallel workers share the process's flags)
        yield


def _adapt_encode(codec: Codec, image: LoadedImage, quality: "float | Rate", config: AdaptConfig,
                  progress: Progress | None, tile: int | None) -> AdaptResult:
    t_start = time.perf_counter()
    deadline = math.inf if config.time_budget is None else t_start + max(config.time_budget, 0.0)
    rate = codec.rate(quality)  # validated and rounded once; every step below uses it
    q = rate.quality
    lam = rate.rd_lambda(codec.config.lambdas)
    codec.select(rate)
    height, width = image.rgb.shape[:2]
    tile = choose_tile(height, width, tile)
    candidates: list[_Candidate] = []
    iterations = adapter_iterations = 0
    planned = (1 + (config.iterations > 0) + (len(config.rdoq_scales) if config.rdoq else 0)
               + (config.adapter_steps > 0) + config.loop_filter)

    def keep_best_pixels() -> None:
        """Only the cheapest candidate's pixels are needed (for the loop filter): bounded memory."""
        best = min(candidates, key=lambda c: c.cost)
        for c in candidates:
            if c is not best:
                c.rgb = None

    def report(c: _Candidate) -> None:
        candidates.append(c)
        keep_best_pixels()
        if progress is not None:
            progress("evaluate", len(candidates), planned, c.cost)

    if progress is not None:  # a line from the start: on a large image the first file takes seconds
        progress("evaluate", 0, planned, math.nan)
    on_tile = None if progress is None else (lambda done, total: progress("tiles", done, total, math.nan))
    y0, z0 = codec.analyse(image.rgb, rate, tile, on_tile)
    # The optimisation target, for the phases that run the synthesis.
    padded = pad_to_multiple(image.rgb, PAD_MULTIPLE) if config.iterations or config.adapter_steps else None
    t_plain = time.perf_counter()
    plain, y_hat = _evaluate(codec, image, rate, lam, z0, y0, None, "none", config.effort, tile)
    # What one evaluation costs: the loop filter (a Gram matrix, filter passes, one encode) takes
    # about twice that, and starts only where the budget has that left.
    filter_seconds = FILTER_COST_OF_EVALUATION * (time.perf_counter() - t_plain)
    report(plain)
    # The best latents so far: every later step builds on them.
    current = _Latents("none", z0, y0, y_hat, plain.cost)

    def then(step: str) -> str:
        return step if current.name == "none" else f"{current.name}+{step}"

    if config.iterations > 0 and time.perf_counter() < deadline:
        generator = torch.Generator().manual_seed(_torch_seed(config.seed))
        # Leave the later phases a share of the budget (latents come first).
        share = 0.7 if config.adapter_steps > 0 else 0.9 if config.rdoq else 1.0
        latent_deadline = t_start + share * (deadline - t_start) if math.isfinite(deadline) else deadline
        with _frozen(codec):
            if tile:
                z1 = z0
                y1, iterations = _refine_latents_tiled(
                    codec, padded, y0, z0, q, lam, height, width, tile, config, generator, latent_deadline, progress)
            else:
                z1, y1, iterations = _refine_latents(
                    codec, codec.image_tensor(padded), y0, q, lam, height, width, config, generator,
                    latent_deadline, progress)
        if iterations > 0:
            refined, y_hat = _evaluate(codec, image, rate, lam, z1, y1, None, "latents", config.effort, tile)
            report(refined)
            if refined.cost < current.cost:
                current = _Latents("latents", z1, y1, y_hat, refined.cost)
    if config.rdoq and time.perf_counter() < deadline:
        name = then("rdoq")
        best_rdoq: tuple[_Candidate, np.ndarray, torch.Tensor] | None = None
        for y_r in rdoq_latents(codec, current.y, current.z, q, lam, config.rdoq_scales):
            if time.perf_counter() >= deadline:
                break
            cand, y_hat = _evaluate(codec, image, rate, lam, current.z, y_r, None, name, config.effort, tile)
            if progress is not None:
                progress("evaluate", len(candidates) + 1, planned, cand.cost)
            if best_rdoq is None or cand.cost < best_rdoq[0].cost:
                best_rdoq = (cand, y_r, y_hat)
        if best_rdoq is not None:
            candidates.append(best_rdoq[0])
            keep_best_pixels()
            if best_rdoq[0].cost < current.cost:
                current = _Latents(name, current.z, best_rdoq[1], best_rdoq[2], best_rdoq[0].cost)
    if config.adapter_steps > 0 and time.perf_counter() < deadline:
        generator = torch.Generator().manual_seed(_torch_seed(config.seed + 1))
        with _frozen(codec):
            views = _adapter_views(codec, padded, current.y_hat, height, width, tile)
            aset, adapter_iterations = _fit_adapter(
                codec, views, q, lam, height * width, config, generator, deadline, progress)
            del views
        if aset is not None:
            adapted, _ = _evaluate(codec, image, rate, lam, current.z, current.y, aset, then("adapters"),
                                   config.effort, tile)
            report(adapted)

    best = plain
    for c in candidates[1:]:  # strictly cheaper only: prefer the simpler file on ties
        if c.cost < best.cost:
            best = c
    if config.loop_filter and time.perf_counter() + filter_seconds <= deadline:
        filtered = _fit_loop_filter(codec, image, rate, lam, best, config, tile, deadline)
        if filtered is not None:
            report(filtered)
            if filtered.cost < best.cost:
                best = filtered
    enc = best.encode
    return AdaptResult(
        data=enc.data,
        chosen=best.name,
        rd_before=plain.cost,
        rd_after=best.cost,
        bits={
            "hyper": enc.bits_hyper,
            "latent": enc.bits_latent,
            "adapters": best.adapter_bits,
            "total": 8 * len(enc.data),
        },
        iterations=iterations,
        adapter_iterations=adapter_iterations,
        seconds=time.perf_counter() - t_start,
        candidates={c.name: c.cost for c in candidates},
        encode=enc,
        mse=best.mse,
    )
