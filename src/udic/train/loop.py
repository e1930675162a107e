"""The training loop: multi-rate R + λ·255²·MSE, bf16 autocast, exact resume.

Every step trains all rates at once: each sample in the batch draws a rate index and
is weighted by that rate's λ, so one run yields the whole variable-rate family.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..models import DEFAULT_LAMBDAS, ModelConfig, UdicModel
from .data import CropDataset, default_data_root, load_eval_images


@dataclass
class TrainConfig:
    out: str = "runs/base"
    steps: int = 20000
    batch: int = 8
    crop: int = 128
    big_crop: int = 256
    big_crop_from: float = 0.85  # fraction of steps after which crops grow
    lr: float = 3e-4
    lr_final: float = 3e-5
    warmup: int = 300
    decay_from: float = 0.6  # cosine decay over the last 40 %
    cycle_from: int = 0  # a warm restart: the schedule (warm-up, plateau, decay) restarts at this step
    aux_lr: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    threads: int = 2
    bf16: bool = True
    eval_every: int = 1000
    ckpt_minutes: float = 5.0
    time_limit_minutes: float = 0.0  # 0: no limit
    train_dir: str = ""
    kodak_dir: str = ""
    pca_patches: int = 40000
    N: int = 128
    M: int = 192
    rates: list[int] = field(default_factory=list)  # restrict to these rate indices
    init_from: str = ""  # start a new run from a weights file (.safetensors) or checkpoint (.pt)
    init: str = "klt"  # a new run's block transform: "klt" (PCA of patches) or "random"
    lambdas: str = ""  # comma-separated λ per rate, low to high; empty: the reference six

    def rate_lambdas(self) -> tuple[float, ...]:
        """The λ of each rate: the reference list unless ``--lambdas`` replaces it."""
        if not self.lambdas:
            return DEFAULT_LAMBDAS
        values = tuple(float(v) for v in self.lambdas.split(","))
        if len(values) < 2 or any(b <= a for a, b in zip(values, values[1:])) or values[0] <= 0:
            raise ValueError(f"--lambdas must be at least two increasing positive numbers, got {self.lambdas!r}")
        return values

    def lr_at(self, step: int) -> float:
        """Warm-up, plateau, cosine decay; over [cycle_from, steps] so a finished run can be
        continued with a new cycle that again ends on a fully decayed, usable model."""
        local = step - self.cycle_from
        if local < self.warmup:
            return self.lr * (max(local, 0) + 1) / self.warmup
        start = self.cycle_from + int(self.decay_from * (self.steps - self.cycle_from))
        if step < start:
            return self.lr
        t = min(1.0, (step - start) / max(1, self.steps - start))
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + math.cos(math.pi * t))

    def crop_at(self, step: int) -> int:
        return self.big_crop if step >= self.big_crop_from * self.steps else self.crop


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def evaluate(model: UdicModel, images: list[torch.Tensor], rates: list[int]) -> list[dict]:
    """Kodak-subset RD per rate; bpp is a likelihood *estimate* (labelled so in the log)."""
    model.eval()
    rows = []
    for r in rates:
        bits = 0.0
        pixels = 0
        mse_sum = 0.0
        psnr_sum = 0.0
        for x in images:
            res = model(x, torch.tensor([float(r)]))
            x_hat = res.x_hat.clamp(0, 1)
            x_q = torch.round(x_hat * 255) / 255
            mse = float(torch.mean((x_q - x) ** 2))
            bits += float(res.y_bits.sum() + res.z_bits.sum())
            pixels += x.shape[-1] * x.shape[-2]
            mse_sum += mse
            psnr_sum += 10 * math.log10(1.0 / max(mse, 1e-12))
        rows.append(
            {
                "rate": r,
                "bpp_estimate": bits / pixels,
                "psnr": psnr_sum / len(images),
            }
        )
    model.train()
    return rows


def trim_log(path: Path, last_step: int) -> None:
    """Keep a log's header and the rows up to ``last_step``: a killed run logged steps its
    checkpoint never saw (the resumed run logs them again), and may have died mid-line.

    Rows that do not parse and a last line without its newline are dropped; a file with
    no header line (killed before its first flush) is emptied so the run writes one.
    """
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # cut off mid-write
    if not lines or not lines[0].startswith("step,"):
        path.write_text("")
        return
    kept = lines[:1]
    for line in lines[1:]:
        try:
            step = int(line.split(",", 1)[0])
        except ValueError:
            continue
        if step <= last_step:
            kept.append(line)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def load_initial_weights(model: UdicModel, path: Path) -> None:
    """Warm start: weights only (optimiser state starts fresh), e.g. a packaged model."""
    if path.suffix == ".pt":
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    else:
        from .. import modelfile

        loaded = modelfile.load(path)
        if loaded.model.config.to_dict() != model.config.to_dict():
            raise ValueError(f"{path}: architecture {loaded.model.config} differs from {model.config}")
        state = loaded.model.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.startswith("entropy_bottleneck._")]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")


def train(cfg: TrainConfig, progress: Callable[[str], None] = print) -> Path:
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data_root = default_data_root()
    train_dir = Path(cfg.train_dir) if cfg.train_dir else data_root / "train"
    kodak_dir = Path(cfg.kodak_dir) if cfg.kodak_dir else data_root / "kodak"

    ckpt_path = out / "last.pt"
    model_cfg = ModelConfig(N=cfg.N, M=cfg.M, lambdas=cfg.rate_lambdas())
    torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed too
    model = UdicModel(model_cfg)
    model = model.to(memory_format=torch.channels_last)
    main_params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=cfg.aux_lr)

    progress(f"loading training images from {train_dir}")
    data = CropDataset(train_dir)
    eval_images = load_eval_images(kodak_dir) if kodak_dir.is_dir() else []

    step = 0
    wall = 0.0
    if not ckpt_path.exists():
        for log_file in ("train_log.csv", "eval_log.csv"):
            trim_log(out / log_file, -1)  # a run that died before its first checkpoint starts over
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        aux_opt.load_state_dict(state["aux_opt"])
        step = int(state["step"])
        wall = float(state["wall"])
        progress(f"resumed from {ckpt_path} at step {step} ({wall / 60:.1f} min)")
        for log_file in ("train_log.csv", "eval_log.csv"):
            trim_log(out / log_file, step)
    elif cfg.init_from:
        load_initial_weights(model, Path(cfg.init_from))
        progress(f"initialised from {cfg.init_from}")
    elif cfg.init == "klt":
        patches = data.random_patches(cfg.seed, cfg.pca_patches, model_cfg.patch)
        model.init_linear_from_patches(patches)
        progress(f"initialised block transform from {cfg.pca_patches} patches")
    elif cfg.init != "random":
        raise ValueError(f"init must be 'klt' or 'random', got {cfg.init!r}")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    lambdas = torch.tensor(model_cfg.lambdas, dtype=torch.float32)
    rate_choices = torch.tensor(cfg.rates or list(range(model_cfg.num_rates)))
    log_path = out / "train_log.csv"
    eval_path = out / "eval_log.csv"
    new_log = not log_path.exists() or log_path.stat().st_size == 0
    log_f = open(log_path, "a", newline="")
    log = csv.writer(log_f)
    if new_log:
        log.writerow(["step", "wall_s", "loss", "bpp", "psnr", "lr", "crop", "sec_per_step"])
    new_eval = not eval_path.exists() or eval_path.stat().st_size == 0
    eval_f = open(eval_path, "a", newline="")
    eval_log = csv.writer(eval_f)
    if new_eval:
        eval_log.writerow(["step", "wall_s", "rate", "lambda", "bpp_estimate", "psnr"])

    def save() -> None:
        _atomic_save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "aux_opt": aux_opt.state_dict(),
                "step": step,
                "wall": wall,
                "model_config": model_cfg.to_dict(),
                "train_config": asdict(cfg),
            },
            ckpt_path,
        )

    eval_seconds = 0.0  # evaluation time is not training time: wall excludes it

    def run_eval() -> None:
        nonlocal eval_seconds
        if not eval_images:
            return
        t_eval = time.time()
        rows = evaluate(model, eval_images, list(range(model_cfg.num_rates)))
        eval_seconds += time.time() - t_eval
        for row in rows:
            eval_log.writerow(
                [step, f"{wall:.1f}", row["rate"], model_cfg.lambdas[row["rate"]],
                 f"{row['bpp_estimate']:.4f}", f"{row['psnr']:.3f}"]
            )
        eval_f.flush()
        progress(
            "eval "
            + " ".join(f"q{r['rate']}:{r['bpp_estimate']:.3f}bpp/{r['psnr']:.2f}dB" for r in rows)
        )

    if step == 0:
        run_eval()

    last_ckpt = time.time()
    t_start = time.time()
    eval_seconds = 0.0  # the step-0 evaluation above happened before t_start
    wall_at_start = wall
    acc_loss = acc_bpp = acc_psnr = 0.0
    acc_n = 0
    t_log = time.time()
    model.train()

    def trained_seconds() -> float:
        return time.time() - t_start - eval_seconds

    while step < cfg.steps:
        if cfg.time_limit_minutes and trained_seconds() > cfg.time_limit_minutes * 60:
            progress("time limit reached")
            if step % cfg.eval_every:
                run_eval()  # the run's last point
            break
        lr = cfg.lr_at(step)
        for group in opt.param_groups:
            group["lr"] = lr
        crop = cfg.crop_at(step)
        x = data.batch(cfg.seed, step, cfg.batch, crop).contiguous(memory_format=torch.channels_last)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        rate = rate_choices[torch.randint(len(rate_choices), (cfg.batch,), generator=g)]
        torch.manual_seed(cfg.seed * 7_919 + step)  # the noise in the forward pass
        res = model(x, rate.float(), autocast=cfg.bf16)
        pixels = x.shape[-1] * x.shape[-2]
        bpp = (res.y_bits + res.z_bits) / pixels
        mse = ((res.x_hat - x) ** 2).flatten(1).mean(1)
        loss = (bpp + lambdas[rate] * 255.0**2 * mse).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, cfg.clip)
        opt.step()
        aux_opt.zero_grad(set_to_none=True)
        aux = model.aux_loss()
        aux.backward()
        aux_opt.step()
        step += 1
        wall = wall_at_start + trained_seconds()

        acc_loss += float(loss.detach())
        acc_bpp += float(bpp.mean())
        acc_psnr += float((-10 * torch.log10(mse.detach().clamp_min(1e-10))).mean())
        acc_n += 1
        if step % 50 == 0:
            dt = (time.time() - t_log) / acc_n
            log.writerow(
                [step, f"{wall:.1f}", f"{acc_loss / acc_n:.4f}", f"{acc_bpp / acc_n:.4f}",
                 f"{acc_psnr / acc_n:.3f}", f"{lr:.2e}", crop, f"{dt:.3f}"]
            )
            log_f.flush()
            progress(
                f"step {step}/{cfg.steps} loss {acc_loss / acc_n:.4f} bpp {acc_bpp / acc_n:.3f} "
                f"psnr {acc_psnr / acc_n:.2f} lr {lr:.1e} {dt:.2f}s/step"
            )
            acc_loss = acc_bpp = acc_psnr = 0.0
            acc_n = 0
            t_log = time.time()
        if step % cfg.eval_every == 0:
            run_eval()
        if time.time() - last_ckpt > cfg.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
    save()
    log_f.close()
    eval_f.close()
    return ckpt_path
