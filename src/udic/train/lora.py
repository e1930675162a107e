"""LoRAM: per-rate low-rank deltas trained progressively on a frozen base.

``python -m udic.train.lora --base weights.safetensors --out runs/lora --rates 3 2 1 0 4 5``

For each rate in the given order, every LoRA-capable conv gets a rank-r delta for that
rate, initialised from the previous (neighbouring) rate's delta — or at zero for the
first — and trained on that rate's λ alone, together with the rate's gain vectors.
The base weights stay frozen, so all rates share one base and the deltas are tiny;
at load time the chosen rate's delta is merged into the weights (no inference cost).
Resumable: the checkpoint records which rates are done and the step within the
current one.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..models import UdicModel
from .data import CropDataset, default_data_root, load_eval_images
from .loop import _atomic_save, evaluate


@dataclass
class LoraConfig:
    base: str = ""  # weights (.safetensors) or checkpoint (.pt) of the base model
    out: str = "runs/lora"
    rates: list[int] = field(default_factory=lambda: [3, 2, 1, 0, 4, 5])
    rank: int = 8
    alpha: float = 8.0
    steps_per_rate: int = 1000
    batch: int = 8
    crop: int = 128
    lr: float = 1e-3
    lr_final: float = 1e-4
    seed: int = 0
    threads: int = 2
    bf16: bool = True
    ckpt_minutes: float = 5.0
    train_dir: str = ""
    kodak_dir: str = ""

    def lr_at(self, step: int) -> float:
        t = min(1.0, step / max(1, self.steps_per_rate))
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + math.cos(math.pi * t))


def rate_key(rate: int) -> str:
    return f"r{rate}"


def add_rate_delta(model: UdicModel, rate: int, rank: int, alpha: float, init_from: int | None) -> list[torch.nn.Parameter]:
    """Give every LoRA layer a delta for ``rate`` (copied from ``init_from``'s if given)."""
    params: list[torch.nn.Parameter] = []
    for layer in model.lora_modules():
        delta = layer.add_lora(rate_key(rate), rank, alpha)
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


def train_lora(cfg: LoraConfig, progress=print) -> Path:
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    root = default_data_root()
    data = CropDataset(Path(cfg.train_dir) if cfg.train_dir else root / "train")
    kodak = Path(cfg.kodak_dir) if cfg.kodak_dir else root / "kodak"
    eval_images = load_eval_images(kodak) if kodak.is_dir() else []
    ckpt_path = out / "last.pt"

    model, model_config = load_base(Path(cfg.base))
    model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    done: list[int] = []
    step = 0
    wall = 0.0
    state = None
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        done = list(state["done"])
        step = int(state["step"])
        wall = float(state["wall"])
        for key, spec in state["lora"].items():
            layer, rate = key.rsplit(".", 1)
            dict(model.named_modules())[layer].add_lora(rate, int(spec["rank"]), float(spec["alpha"]))
        model.load_state_dict(state["model"])
        progress(f"resumed: rates done {done}, step {step} of the next")

    log_path = out / "lora_log.csv"
    new_log = not log_path.exists()
    log_f = open(log_path, "a", newline="")
    log = csv.writer(log_f)
    if new_log:
        log.writerow(["rate", "step", "wall_s", "loss", "bpp", "psnr", "lr"])

    def save(current: int | None, opt_state: dict | None) -> None:
        _atomic_save({"model": model.state_dict(), "lora": model.lora_spec(), "done": done, "step": step,
                      "wall": wall, "current": current, "opt": opt_state, "model_config": model_config,
                      "train_config": asdict(cfg)}, ckpt_path)

    lambdas = model.config.lambdas
    previous: int | None = done[-1] if done else None
    for rate in cfg.rates:
        if rate in done:
            previous = rate
            continue
        key = rate_key(rate)
        existing = any(key in layer.lora for layer in model.lora_modules())
        if existing:
            params = [p for layer in model.lora_modules() for p in (layer.lora[key].A, layer.lora[key].B)]
        else:
            neighbour = min(done, key=lambda r: abs(r - rate)) if done else None
            params = add_rate_delta(model, rate, cfg.rank, cfg.alpha, neighbour)
            step = 0
        for p in params:
            p.requires_grad_(True)
        gains = [model.log_gain, model.log_inv_gain]
        for g in gains:
            g.requires_grad_(True)
        opt = torch.optim.Adam(params + gains, lr=cfg.lr)
        if state is not None and state.get("current") == rate and state.get("opt"):
            opt.load_state_dict(state["opt"])
        set_active_rate(model, rate)
        lam = lambdas[rate]
        rate_vec = torch.full((cfg.batch,), float(rate))
        last_ckpt = time.time()
        t_start = time.time()
        wall_at_start = wall
        while step < cfg.steps_per_rate:
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(step)
            x = data.batch(cfg.seed + 1000 * (rate + 1), step, cfg.batch, cfg.crop)
            x = x.contiguous(memory_format=torch.channels_last)
            torch.manual_seed(cfg.seed * 7_919 + 100_003 * rate + step)
            res = model(x, rate_vec, autocast=cfg.bf16)
            pixels = x.shape[-1] * x.shape[-2]
            bpp = (res.y_bits + res.z_bits) / pixels
            mse = ((res.x_hat - x) ** 2).flatten(1).mean(1)
            loss = (bpp + lam * 255.0**2 * mse).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # Only this rate's gains may move: the other rows keep their trained values.
            for g in gains:
                if g.grad is not None:
                    mask = torch.zeros_like(g.grad)
                    mask[rate] = 1
                    g.grad.mul_(mask)
            torch.nn.utils.clip_grad_norm_(params + gains, 1.0)
            opt.step()
            step += 1
            wall = wall_at_start + time.time() - t_start
            if step % 50 == 0:
                psnr = float((-10 * torch.log10(mse.detach().clamp_min(1e-10))).mean())
                log.writerow([rate, step, f"{wall:.1f}", f"{float(loss.detach()):.4f}",
                              f"{float(bpp.mean()):.4f}", f"{psnr:.3f}", f"{cfg.lr_at(step):.2e}"])
                log_f.flush()
                progress(f"rate {rate} step {step}/{cfg.steps_per_rate} loss {float(loss.detach()):.4f}")
            if time.time() - last_ckpt > cfg.ckpt_minutes * 60:
                save(rate, opt.state_dict())
                last_ckpt = time.time()
        for p in params + gains:
            p.requires_grad_(False)
        done.append(rate)
        previous = rate
        step = 0
        state = None
        save(None, None)
        if eval_images:
            set_active_rate(model, rate)
            row = evaluate(model, eval_images, [rate])[0]
            progress(f"rate {rate}: {row['bpp_estimate']:.4f} bpp (estimate), {row['psnr']:.2f} dB")
    set_active_rate(model, None)
    save(None, None)
    log_f.close()
    (out / "lora.json").write_text(json.dumps({"done": done, "previous": previous}, indent=1))
    return ckpt_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m udic.train.lora", description=__doc__)
    for f in LoraConfig.__dataclass_fields__.values():
        default = f.default if not callable(f.default_factory) else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=default)
        elif isinstance(default, list):
            p.add_argument(flag, type=int, nargs="+", default=default)
        else:
            p.add_argument(flag, type=type(default), default=default)
    a = p.parse_args(argv)
    cfg = LoraConfig(**vars(a))
    if not cfg.base:
        p.error("--base is required")
    train_lora(cfg, progress=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
