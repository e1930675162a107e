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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from . import adapters as adapters_mod
from .adapters import DEFAULT_SCALE, DEFAULT_STEP, Adapter, AdapterSet
from .codec import Codec, EncodeResult
from .imageio import LoadedImage, crop
from .models import LOG_SCALE_MAX, LOG_SCALE_MIN, gaussian_likelihood, lower_bound, ste_round

Chosen = Literal["latents+adapters", "latents", "none"]
Progress = Callable[[str, int, int, float], None]

MAX_EFFORT = 5
DEFAULT_EFFORT = 2
_LIKELIHOOD_FLOOR = 1e-9

# effort → (latent iterations, latent lr, adapter steps, adapter lr).  Few passes with
# a high, exponentially decaying lr keep most of the gain of the long GPU schedules.
_PRESETS: dict[int, tuple[int, float, int, float]] = {
    0: (0, 0.0, 0, 0.0),
    1: (20, 0.1, 0, 0.0),
    2: (40, 0.08, 20, 0.03),
    3: (100, 0.05, 40, 0.02),
    4: (300, 0.02, 100, 0.01),
    5: (1000, 0.01, 300, 0.005),
}


@dataclass(frozen=True)
class AdaptConfig:
    """How hard to try.  Build with ``AdaptConfig.for_effort(n, **overrides)``."""

    effort: int = DEFAULT_EFFORT
    iterations: int = 40  # latent-refinement iterations (0 = skip)
    lr: float = 0.08  # Adam lr on the gained latents (units of quantisation bins)
    lr_final_ratio: float = 0.1  # lr decays exponentially to lr · ratio
    t0: int = 8  # SGA: τ stays at tau_max until iteration t0 …
    decay: float = math.log(5.0) / 32  # … then τ(t) = tau_max · exp(−decay · (t − t0))
    tau_max: float = 0.5
    adapter_steps: int = 20  # adapter optimisation steps (0 = no adapters)
    adapter_lr: float = 0.03
    rank: int = 2
    slot: int = 1  # after the second synthesis stage (1/4 resolution)
    step: float = DEFAULT_STEP  # adapter weight bin width w
    scale: float = DEFAULT_SCALE  # logistic prior scale s
    init_std: float = 0.02
    patience: int = 8  # iterations without improvement of the smoothed cost
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
        if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort <= MAX_EFFORT:
            raise ValueError(f"effort must be an integer 0…{MAX_EFFORT}, got {effort!r}")
        iterations, lr, adapter_steps, adapter_lr = _PRESETS[effort]
        iterations = int(overrides.get("iterations", iterations))  # type: ignore[call-overload]
        t0 = iterations // 5
        fields: dict[str, object] = {
            "effort": effort,
            "iterations": iterations,
            "lr": lr,
            "t0": t0,
            "decay": math.log(5.0) / max(iterations - t0, 1),
            "adapter_steps": adapter_steps,
            "adapter_lr": adapter_lr,
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


def rd_lambda(codec: Codec, quality: float) -> float:
    """λ of a fractional rate: log λ interpolated between the two trained rates."""
    lambdas = codec.config.lambdas
    i = min(int(math.floor(quality)), len(lambdas) - 1)
    j = min(i + 1, len(lambdas) - 1)
    t = quality - i
    return math.exp((1 - t) * math.log(lambdas[i]) + t * math.log(lambdas[j]))


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
class _Candidate:
    name: Chosen
    encode: EncodeResult
    cost: float
    adapter_bits: int


def _evaluate(
    codec: Codec,
    image: LoadedImage,
    quality: float,
    lam: float,
    z_symbols: np.ndarray,
    y: np.ndarray,
    aset: AdapterSet | None,
    name: Chosen,
    plain: bool = False,
) -> tuple[_Candidate, torch.Tensor]:
    """Code for real and reconstruct exactly as the decoder would; returns (candidate, ŷ)."""
    enc = codec.encode(image, quality) if plain else codec.encode(image, quality, aset, latents=(z_symbols, y))
    _, means = codec._entropy_params(z_symbols)
    residuals = np.rint(y - means.numpy()).astype(np.int64)
    y_hat = torch.from_numpy(residuals.astype(np.float32)) + means
    q = enc.header.quality
    height, width = image.rgb.shape[:2]
    rgb = crop(codec.synthesise(y_hat, q, aset), height, width)
    mse = float(np.mean((rgb.astype(np.float64) - image.rgb.astype(np.float64)) ** 2))
    cost = 8 * len(enc.data) / (height * width) + lam * mse
    adapter_bits = 0
    if aset is not None and aset.adapters:
        adapter_bits = 8 * len(adapters_mod.encode_adapters(aset))
    return _Candidate(name, enc, cost, adapter_bits), y_hat


def _masked_mse(x_hat: torch.Tensor, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """MSE over the real pixels only: the padding is never shown, so it costs nothing."""
    return (x_hat.float()[..., :height, :width] - x[..., :height, :width]).pow(2).mean()


def _lr_at(t: int, total: int, lr: float, ratio: float) -> float:
    return lr * ratio ** (t / max(total - 1, 1))


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
    gain, inv_gain = model.gains(q)
    inv_gain = inv_gain.detach().to(device).view(1, -1, 1, 1)
    y_init = torch.from_numpy(y0).to(device)[None]
    with torch.no_grad():
        z_init = model.h_a(y_init.contiguous(memory_format=torch.channels_last)).float()
    y_var = torch.nn.Parameter(y_init.clone().contiguous())
    z_var = torch.nn.Parameter(z_init.clone().contiguous())
    opt = torch.optim.Adam([y_var, z_var], lr=cfg.lr)
    eb = model.entropy_bottleneck
    pixels = float(height * width)
    d_weight = lam * 255.0**2
    stopper = _Stopper(cfg.patience, cfg.min_improvement)
    done = 0
    for t in range(cfg.iterations):
        if time.perf_counter() >= deadline:
            break
        for group in opt.param_groups:
            group["lr"] = _lr_at(t, cfg.iterations, cfg.lr, cfg.lr_final_ratio)
        tau = cfg.tau(t)
        z_t = sga_round(z_var, tau, generator)
        n_z = z_t.shape[1]
        z_lik, _, _ = eb._likelihood(z_t.permute(1, 0, 2, 3).reshape(n_z, 1, -1), stop_gradient=True)
        z_bits = -torch.log2(lower_bound(z_lik, _LIKELIHOOD_FLOOR)).sum()
        log_scale, mean = model.h_s(z_t).float().chunk(2, dim=1)
        log_scale = lower_bound(log_scale, LOG_SCALE_MIN).clamp_max(LOG_SCALE_MAX)
        r_t = sga_round(y_var - mean, tau, generator)
        y_bits = -torch.log2(gaussian_likelihood(r_t, log_scale.exp())).sum()
        y_in = ((r_t + mean) * inv_gain).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            x_hat = model.g_s(y_in)
        loss = (y_bits + z_bits) / pixels + d_weight * _masked_mse(x_hat, x, height, width)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
        value = float(loss.detach())
        if progress is not None:
            progress("latents", done, cfg.iterations, value)
        if stopper.update(value):
            break
    y_out = y_var.detach()[0].float().cpu().numpy()
    z_out = torch.round(z_var.detach())[0].to("cpu", torch.int64).numpy()
    return z_out, y_out, done


# ---- phase 2: adapters -----------------------------------------------------------------


def _logistic_bits(w: torch.Tensor, step: float, scale: float, noise: torch.Tensor) -> torch.Tensor:
    """Bits of weights under the quantised logistic, with uniform noise standing in for rounding."""
    k = (w / step + noise).abs()  # symmetric prior: use |k| for a stable difference
    upper = torch.sigmoid((-k + 0.5) * step / scale)
    lower = torch.sigmoid((-k - 0.5) * step / scale)
    return -torch.log2(lower_bound(upper - lower, _LIKELIHOOD_FLOOR)).sum()


def _fit_adapter(
    codec: Codec,
    x: torch.Tensor,
    y_hat: torch.Tensor,
    q: float,
    lam: float,
    height: int,
    width: int,
    cfg: AdaptConfig,
    generator: torch.Generator,
    deadline: float,
    progress: Progress | None,
) -> tuple[AdapterSet | None, int]:
    """Optimise one rank-r adapter in ``cfg.slot`` for adapter bits/pixel + λ·255²·MSE.

    Mixed quantisation: straight-through rounding to the bin grid on the decoder path,
    uniform noise on the rate path.  The synthesis up to the slot does not depend on
    the adapter, so it runs once.
    """
    model = codec.model
    g_s = model.g_s
    device = codec.device
    if not 0 <= cfg.slot < len(g_s.slots):
        raise ValueError(f"adapter slot must be 0…{len(g_s.slots) - 1}, got {cfg.slot}")
    step_q, scale_q = adapters_mod.quantised_params(cfg.step, cfg.scale)
    step, scale = step_q / 4096, scale_q / 4096  # exactly what the file will carry
    _, inv_gain = model.gains(q)
    y_in = (y_hat.to(device)[None] * inv_gain.view(1, -1, 1, 1)).contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    for s in g_s.slots:
        s.clear()
    with torch.no_grad(), autocast:
        h = y_in
        for k in range(cfg.slot + 1):
            h = g_s.stages[k](h)
            if k < cfg.slot:
                h = g_s.slots[k](h)
        prefix = h.detach()
        linear = g_s.linear(y_in).detach()

    def suffix(h: torch.Tensor) -> torch.Tensor:
        h = g_s.slots[cfg.slot](h)
        for k in range(cfg.slot + 1, len(g_s.stages)):
            h = g_s.slots[k](g_s.stages[k](h))
        return linear + g_s.out(h)

    channels = g_s.slots[cfg.slot].channels
    down = torch.nn.Parameter((torch.randn(cfg.rank, channels, generator=generator) * cfg.init_std).to(device))
    up = torch.nn.Parameter((torch.randn(channels, cfg.rank, generator=generator) * cfg.init_std).to(device))
    opt = torch.optim.Adam([down, up], lr=cfg.adapter_lr)
    pixels = float(height * width)
    d_weight = lam * 255.0**2
    stopper = _Stopper(cfg.patience, cfg.min_improvement)
    done = 0
    try:
        for t in range(cfg.adapter_steps):
            if time.perf_counter() >= deadline:
                break
            for group in opt.param_groups:
                group["lr"] = _lr_at(t, cfg.adapter_steps, cfg.adapter_lr, cfg.lr_final_ratio)
            g_s.slots[cfg.slot].set(ste_round(down / step) * step, ste_round(up / step) * step)
            with autocast:
                x_hat = suffix(prefix)
            n_down = (torch.rand(down.shape, generator=generator) - 0.5).to(device)
            n_up = (torch.rand(up.shape, generator=generator) - 0.5).to(device)
            bits = _logistic_bits(down, step, scale, n_down) + _logistic_bits(up, step, scale, n_up)
            loss = bits / pixels + d_weight * _masked_mse(x_hat, x, height, width)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            value = float(loss.detach())
            if progress is not None:
                progress("adapters", done, cfg.adapter_steps, value)
            if stopper.update(value):
                break
    finally:
        g_s.slots[cfg.slot].clear()
    k_down = torch.round(down.detach() / step).to("cpu", torch.int64).numpy()
    k_up = torch.round(up.detach() / step).to("cpu", torch.int64).numpy()
    if done == 0 or not (k_down.any() and k_up.any()):
        return None, done  # a zero factor makes the adapter the identity: nothing to send
    aset = AdapterSet(step=step, scale=scale, adapters=[Adapter(slot=cfg.slot, down=k_down, up=k_up)])
    return aset, done


# ---- entry point -------------------------------------------------------------------------


def adapt_encode(
    codec: Codec,
    image: LoadedImage,
    quality: float,
    config: AdaptConfig,
    progress: Progress | None = None,
) -> AdaptResult:
    """Encode ``image`` with per-image adaptation; the file is never worse in RD cost.

    ``progress(phase, step, total, rd_cost)`` is called after every iteration
    (phase "latents" or "adapters", stochastic cost in bpp + λ·MSE₂₅₅) and once per
    evaluated candidate (phase "evaluate", actual cost of the coded file).
    """
    t_start = time.perf_counter()
    deadline = math.inf if config.time_budget is None else t_start + max(config.time_budget, 0.0)
    rate = codec._rate_from_quality(quality)
    q = rate / 256
    lam = rd_lambda(codec, q)
    codec._select_rate(rate)
    height, width = image.rgb.shape[:2]
    candidates: list[_Candidate] = []
    iterations = adapter_iterations = 0

    def report(c: _Candidate, index: int) -> None:
        candidates.append(c)
        if progress is not None:
            progress("evaluate", index, 3, c.cost)

    y0, z0 = codec.analyse(image.rgb, q)
    plain, y_hat = _evaluate(codec, image, quality, lam, z0, y0, None, "none", plain=True)
    report(plain, 1)

    if (config.iterations > 0 or config.adapter_steps > 0) and time.perf_counter() < deadline:
        generator = torch.Generator().manual_seed(config.seed)
        x = codec.image_tensor(image.rgb)
        z1, y1 = z0, y0
        with _frozen(codec):
            if config.iterations > 0:
                # Leave the adapter phase a share of the budget (latents come first).
                share = 0.7 if config.adapter_steps > 0 else 1.0
                latent_deadline = t_start + share * (deadline - t_start) if math.isfinite(deadline) else deadline
                z1, y1, iterations = _refine_latents(
                    codec, x, y0, q, lam, height, width, config, generator, latent_deadline, progress
                )
                if iterations > 0:
                    refined, y_hat = _evaluate(codec, image, quality, lam, z1, y1, None, "latents")
                    report(refined, 2)
            if config.adapter_steps > 0 and time.perf_counter() < deadline:
                aset, adapter_iterations = _fit_adapter(
                    codec, x, y_hat, q, lam, height, width, config, generator, deadline, progress
                )
                if aset is not None:
                    # Named for the usual order; with iterations=0 the latents are the plain ones.
                    name: Chosen = "latents+adapters"
                    adapted, _ = _evaluate(codec, image, quality, lam, z1, y1, aset, name)
                    report(adapted, 3)

    best = plain
    for c in candidates[1:]:  # strictly cheaper only: prefer the simpler file on ties
        if c.cost < best.cost:
            best = c
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
    )
