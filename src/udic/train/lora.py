"""LoRAM: per-rate low-rank deltas trained progressively on a frozen base.

``python -m udic.train.lora --base weights.safetensors --out runs/lora``

The base rate (``--base-rate``, default 3) is the base network itself and has no
delta.  Every other rate, in the order given by ``--rates``, gets a rank-r delta on
every LoRA-capable conv (``--rank`` for the transforms, ``--hyper-rank`` for the
hyperprior networks), initialised from its nearest already-trained neighbour's
delta (zero next to the base rate) and trained on that rate's λ alone together with
the rate's own gain vectors.  The base weights stay frozen, so all rates share one
base and the deltas are tiny; at load the chosen rate's delta is merged into the
weights, which costs nothing at inference.

``--mode full`` is the comparison the design is judged by: each listed rate gets a
full fine-tune of every weight from the same base, with the same batches and steps,
saved as ``full-r<rate>.pt``.

Resumable: the checkpoint records which rates are done and the step within the
current one, with the optimiser state.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..models import UdicModel, initial_log_gains
from .data import CropDataset, default_data_root, load_eval_images
from .loop import _atomic_save, evaluate
from .options import fast_bf16, parse_config

HYPER_PREFIXES = ("h_a.", "h_s.")


@dataclass
class LoraConfig:
    base: str = ""  # weights (.safetensors) or checkpoint (.pt) of the base model
    out: str = "runs/lora"
    mode: str = "lora"  # "lora" or "full" (full fine-tuning per rate, for comparison)
    rates: list[int] = field(default_factory=lambda: [2, 1, 0, 4, 5])
    base_rate: int = 3  # the rate the base network serves without a delta (-1: none)
    rank: int = 2
    hyper_rank: int = 1
    alpha_over_rank: float = 1.0  # LoRA scale α/r
    steps_per_rate: int = 1000
    batch: int = 8
    crop: int = 128
    lr: float = 1e-3
    lr_final: float = 1e-4
    full_lr: float = 1e-4  # peak learning rate of --mode full
    seed: int = 0
    threads: int = 2
    bf16: bool = True
    ckpt_minutes: float = 5.0
    train_dir: str = ""
    kodak_dir: str = ""
    synthetic: float = 0.0  # share of each batch drawn procedurally, as the base's --synthetic
    synthetic_style: int = 1  # which kinds, as the base's --synthetic-style
    augment: str = "flip"  # the crops' views, as the base's --augment
    # "rate:λ,…" replaces those rates' λ (stored in the model's config), e.g. to move the
    # lowest rate down; the rates listed are (re)trained from their current delta.
    lambda_override: str = ""
    # comma-separated layer names that get no delta (e.g. "g_a.linear,g_s.linear"), to fit
    # a storage budget on a narrow model where rank-1 deltas on every layer would exceed it
    exclude: str = ""

    def excluded(self) -> tuple[str, ...]:
        return tuple(filter(None, (name.strip() for name in self.exclude.split(","))))

    def overrides(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for item in filter(None, self.lambda_override.split(",")):
            rate, lam = item.split(":")
            out[int(rate)] = float(lam)
        return out

    def lr_at(self, step: int, peak: float | None = None) -> float:
        peak = self.lr if peak is None else peak
        final = self.lr_final * peak / self.lr
        t = min(1.0, step / max(1, self.steps_per_rate))
        return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * t))


def rate_key(rate: int) -> str:
    return f"r{rate}"


def rank_for(layer_name: str, rank: int, hyper_rank: int) -> int:
    return hyper_rank if layer_name.startswith(HYPER_PREFIXES) else rank


def add_rate_delta(model: UdicModel, rate: int, rank: int, alpha: float, init_from: int | None,
                   hyper_rank: int | None = None, exclude: tuple[str, ...] = ()) -> list[torch.nn.Parameter]:
    """Give every LoRA layer not in ``exclude`` a delta for ``rate`` (copied from ``init_from``'s if given).

    ``alpha`` is α/r, the scale of B·A, so the merged weight is W + (α/r)·B·A.
    Excluded layers (exact names) keep the base weight at this rate, which the
    format allows: a rate's delta is whatever layers it lists.
    """
    params: list[torch.nn.Parameter] = []
    for name, layer in model.named_modules():
        if not hasattr(layer, "add_lora") or name in exclude:
            continue
        r = rank_for(name, rank, rank if hyper_rank is None else hyper_rank)
        delta = layer.add_lora(rate_key(rate), r, alpha * r)
        if init_from is not None and rate_key(init_from) in layer.lora:
            src = layer.lora[rate_key(init_from)]
            with torch.no_grad():
                delta.A.copy_(src.A)
                delta.B.copy_(src.B)
        params += [delta.A, delta.B]
    return params


def set_active_rate(model: UdicModel, rate: int | None) -> None:
    for layer in model.lora_modules():
        layer.active_rate = None if rate is None else rate_key(rate)


def load_base(path: Path) -> tuple[UdicModel, dict]:
    if path.suffix == ".pt":
        from .export import load_checkpoint

        model, state = load_checkpoint(path)
        return model, state.get("model_config", model.config.to_dict())
    from .. import modelfile

    loaded = modelfile.load(path)
    return loaded.model, loaded.model.config.to_dict()


def nearest_trained(rate: int, done: list[int], base_rate: int) -> int | None:
    """The neighbour a new delta starts from; ``None`` (zero delta) next to the base rate."""
    candidates = done + ([base_rate] if base_rate >= 0 else [])
    if not candidates:
        return None
    nearest = min(candidates, key=lambda r: (abs(r - rate), r != base_rate))
    return None if nearest == base_rate else nearest


class _Trainer:
    """One rate's optimisation: shared by LoRA and full fine-tuning so both see the same data."""

    def __init__(self, cfg: LoraConfig, log_path: Path, progress: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.progress = progress
        root = default_data_root()
        self.data = CropDataset(Path(cfg.train_dir) if cfg.train_dir else root / "train",
                                synthetic=cfg.synthetic, synthetic_style=cfg.synthetic_style,
                                augment=cfg.augment)
        kodak = Path(cfg.kodak_dir) if cfg.kodak_dir else root / "kodak"
        self.eval_images = load_eval_images(kodak) if kodak.is_dir() else []
        new_log = not log_path.exists()
        self.log_f = open(log_path, "a", newline="")
        self.log = csv.writer(self.log_f)
        if new_log:
            self.log.writerow(["mode", "rate", "step", "wall_s", "loss", "bpp", "psnr", "lr"])
            self.log_f.flush()

    def run(self, model: UdicModel, rate: int, params: list[torch.nn.Parameter], step: int,
            wall: float, opt_state: dict | None, peak_lr: float,
            save: Callable[[int, float, dict], None]) -> float:
        cfg = self.cfg
        gains = [model.log_gain, model.log_inv_gain]
        for p in params + gains:
            p.requires_grad_(True)
        opt = torch.optim.Adam([{"params": params, "lr": peak_lr}, {"params": gains, "lr": cfg.lr}])
        if opt_state:
            opt.load_state_dict(opt_state)
        lam = model.config.lambdas[rate]
        rate_vec = torch.full((cfg.batch,), float(rate))
        last_ckpt = time.time()
        t_start = time.time()
        wall_at_start = wall
        while step < cfg.steps_per_rate:
            opt.param_groups[0]["lr"] = cfg.lr_at(step, peak_lr)
            opt.param_groups[1]["lr"] = cfg.lr_at(step)
            x = self.data.batch(cfg.seed + 1000 * (rate + 1), step, cfg.batch, cfg.crop)
            x = x.contiguous(memory_format=torch.channels_last)
            torch.manual_seed(cfg.seed * 7_919 + 100_003 * rate + step)
            res = model(x, rate_vec, autocast=cfg.bf16 and fast_bf16("cpu"))
            pixels = x.shape[-1] * x.shape[-2]
            bpp = (res.y_bits + res.z_bits) / pixels
            mse = ((res.x_hat - x) ** 2).flatten(1).mean(1)
            loss = (bpp + lam * 255.0**2 * mse).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # Only this rate's gains may move: the other rows keep their trained values.
            for g in gains:
                if g.grad is not None:
                    keep = torch.zeros_like(g.grad)
                    keep[rate] = 1
                    g.grad.mul_(keep)
            torch.nn.utils.clip_grad_norm_(params + gains, 1.0)
            opt.step()
            step += 1
            wall = wall_at_start + time.time() - t_start
            if step % 50 == 0:
                psnr = float((-10 * torch.log10(mse.detach().clamp_min(1e-10))).mean())
                self.log.writerow([cfg.mode, rate, step, f"{wall:.1f}", f"{float(loss.detach()):.4f}",
                                   f"{float(bpp.mean()):.4f}", f"{psnr:.3f}", f"{cfg.lr_at(step, peak_lr):.2e}"])
                self.log_f.flush()
                self.progress(f"{cfg.mode} rate {rate} step {step}/{cfg.steps_per_rate} "
                              f"loss {float(loss.detach()):.4f} bpp {float(bpp.mean()):.3f} {psnr:.2f} dB")
            if time.time() - last_ckpt > cfg.ckpt_minutes * 60:
                save(step, wall, opt.state_dict())
                last_ckpt = time.time()
        for p in params + gains:
            p.requires_grad_(False)
        return wall

    def report(self, model: UdicModel, rate: int) -> None:
        if self.eval_images:
            row = evaluate(model, self.eval_images, [rate])[0]
            self.progress(f"{self.cfg.mode} rate {rate}: {row['bpp_estimate']:.4f} bpp (estimate), "
                          f"{row['psnr']:.2f} dB")

    def close(self) -> None:
        self.log_f.close()


def _apply_lambda_overrides(model: UdicModel, cfg: LoraConfig) -> dict:
    """Replace the overridden rates' λ in the model's config, and append the rates above its top
    that the overrides name (``extend_rates``); returns the config as a dict."""
    overrides = cfg.overrides()
    top = model.config.num_rates
    if overrides:
        lambdas = list(model.config.lambdas)
        for rate, lam in overrides.items():
            if rate < top:
                lambdas[rate] = lam
        model.config = dataclasses.replace(model.config, lambdas=tuple(lambdas))
    extend_rates(model, {r: lam for r, lam in overrides.items() if r >= top})
    return model.config.to_dict()


def extend_rates(model: UdicModel, lambdas: dict[int, float]) -> int:
    """Append rates above the model's top, with these λ (LoRAM's next rung up: its delta is
    trained from its neighbour's like any other rate, the base stays as it is).  A new rate's
    gains start from the rate below's, moved by the step between the two λ's high-rate optima.
    Why: the top rate sets the ceiling of the whole quality scale (Kodak stopped at ~34.5 dB).
    Returns how many rates were added."""
    top = model.config.num_rates
    new = sorted(lambdas)
    if not new:
        return 0
    if new != list(range(top, top + len(new))):
        raise ValueError(f"rates above the top ({top - 1}) must follow it without gaps: {new}")
    model.config = dataclasses.replace(model.config, lambdas=tuple(model.config.lambdas) + tuple(lambdas[r] for r in new))
    rows = len(new)
    model.log_gain = torch.nn.Parameter(torch.cat([model.log_gain.detach(), model.log_gain.detach()[-1:].repeat(rows, 1)]),
                                        requires_grad=model.log_gain.requires_grad)
    model.log_inv_gain = torch.nn.Parameter(
        torch.cat([model.log_inv_gain.detach(), model.log_inv_gain.detach()[-1:].repeat(rows, 1)]),
        requires_grad=model.log_inv_gain.requires_grad)
    for r in new:
        start_appended_gains(model, r)
    return len(new)


def start_appended_gains(model: UdicModel, rate: int) -> None:
    """An appended rate's gains: the rate below's, moved by the step between the two λ's
    high-rate optima (set again when its training starts, from the trained rate below)."""
    ideal = initial_log_gains(tuple(model.config.lambdas))
    step = float(ideal[rate] - ideal[rate - 1])
    with torch.no_grad():
        model.log_gain[rate] = model.log_gain[rate - 1] + step
        model.log_inv_gain[rate] = model.log_inv_gain[rate - 1] - step


def train_lora(cfg: LoraConfig, progress: Callable[[str], None] = print) -> Path:
    if cfg.mode == "full":
        return train_full(cfg, progress)
    if cfg.mode != "lora":
        raise ValueError(f"unknown mode {cfg.mode!r}")
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    model, model_config = load_base(Path(cfg.base))
    base_top = model.config.num_rates
    model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    done: list[int] = []
    step, wall = 0, 0.0
    state = None
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        done, step, wall = list(state["done"]), int(state["step"]), float(state["wall"])
        # Rates the checkpoint appended above the base's top: their rows are in its gains.
        saved = list(state["model_config"]["lambdas"])
        extend_rates(model, {r: saved[r] for r in range(base_top, len(saved))})
        modules = dict(model.named_modules())
        for key, spec in state["lora"].items():
            layer, rate = key.rsplit(".", 1)
            modules[layer].add_lora(rate, int(spec["rank"]), float(spec["alpha"]))
        model.load_state_dict(state["model"])
        progress(f"resumed: rates done {done}, step {step} of the next")
    # After a resume, so that a rate appended now starts from the trained gains below it.
    model_config = _apply_lambda_overrides(model, cfg)
    trainer = _Trainer(cfg, out / "lora_log.csv", progress)
    wall_per_rate: dict[str, float] = dict(state.get("wall_per_rate", {})) if state else {}
    rate_start_wall = float(state.get("rate_start_wall", wall)) if state else 0.0

    def save(current: int | None, at_step: int, at_wall: float, opt_state: dict | None) -> None:
        _atomic_save({"model": model.state_dict(), "lora": model.lora_spec(), "done": done, "step": at_step,
                      "wall": at_wall, "current": current, "opt": opt_state, "model_config": model_config,
                      "wall_per_rate": wall_per_rate, "rate_start_wall": rate_start_wall,
                      "train_config": asdict(cfg)}, ckpt_path)

    for rate in cfg.rates:
        if rate in done or rate == cfg.base_rate:
            continue
        key = rate_key(rate)
        if any(key in layer.lora for layer in model.lora_modules()):  # resuming this rate
            params = [p for layer in model.lora_modules() if key in layer.lora
                      for p in (layer.lora[key].A, layer.lora[key].B)]
            opt_state = state.get("opt") if state is not None and state.get("current") == rate else None
        else:
            torch.manual_seed(cfg.seed * 7_919 + rate)  # the fresh A factors are part of the run's recipe
            params = add_rate_delta(model, rate, cfg.rank, cfg.alpha_over_rank,
                                    nearest_trained(rate, done, cfg.base_rate), cfg.hyper_rank, cfg.excluded())
            step, opt_state = 0, None
            rate_start_wall = wall
            if rate >= base_top:
                start_appended_gains(model, rate)
        set_active_rate(model, rate)
        wall = trainer.run(model, rate, params, step, wall, opt_state, cfg.lr,
                           lambda s, w, o, r=rate: save(r, s, w, o))
        wall_per_rate[key] = wall - rate_start_wall
        done.append(rate)
        step, state = 0, None
        save(None, 0, wall, None)
        trainer.report(model, rate)
    set_active_rate(model, None)
    save(None, 0, wall, None)
    trainer.close()
    (out / "lora.json").write_text(json.dumps({"done": done, "base_rate": cfg.base_rate,
                                               "wall_per_rate": wall_per_rate}, indent=1))
    return ckpt_path


def train_full(cfg: LoraConfig, progress: Callable[[str], None] = print) -> Path:
    """Full fine-tuning of every weight, one independent model per rate, from the same base."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    trainer = _Trainer(cfg, out / "lora_log.csv", progress)
    last = out / "last.pt"
    for rate in cfg.rates:
        path = out / f"full-r{rate}.pt"
        model, _ = load_base(Path(cfg.base))
        model_config = _apply_lambda_overrides(model, cfg)  # the same λ as the deltas it is compared with
        model.train()
        step, wall, opt_state = 0, 0.0, None
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=False)
            model.load_state_dict(state["model"])
            step, wall, opt_state = int(state["step"]), float(state["wall"]), state.get("opt")
            if step >= cfg.steps_per_rate:
                continue
            progress(f"resumed full fine-tune of rate {rate} at step {step}")
        params = [p for n, p in model.named_parameters()
                  if n not in ("log_gain", "log_inv_gain") and not n.startswith("entropy_bottleneck")]

        def save(at_step: int, at_wall: float, opt: dict | None, path: Path = path, model: UdicModel = model,
                 model_config: dict = model_config) -> None:
            _atomic_save({"model": model.state_dict(), "lora": {}, "step": at_step, "wall": at_wall,
                          "opt": opt, "model_config": model_config, "train_config": asdict(cfg)}, path)

        wall = trainer.run(model, rate, params, step, wall, opt_state, cfg.full_lr, save)
        save(cfg.steps_per_rate, wall, None)
        trainer.report(model, rate)
        last = path
    trainer.close()
    return last


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(LoraConfig, argv, "python -m udic.train.lora", __doc__)
    if not cfg.base:
        print("python -m udic.train.lora: --base is required", file=sys.stderr)
        return 2
    train_lora(cfg, progress=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
