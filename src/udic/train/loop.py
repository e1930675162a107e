"""The training loop: multi-rate R + λ·255²·MSE, bf16 autocast, exact resume.

Every step trains all rates at once: each sample in the batch draws a rate index and
is weighted by that rate's λ, so one run yields the whole variable-rate family.

The same loop runs in one process or under ``torchrun`` with DistributedDataParallel
(gloo on CPU, NCCL on CUDA): every rank draws its own batches (rank 0 the very batches
a single process would), gradients are averaged by DDP, and rank 0 alone logs,
evaluates and checkpoints.  ``--batch`` is per rank.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..latent_codecs.registry import DEFAULT_LATENT_CODEC
from ..models import CHANNEL_CONTEXT_CODEC, DEFAULT_LAMBDAS, ModelConfig, UdicModel
from .data import AUGMENTS, CropDataset, default_data_root, load_eval_images
from .options import fast_bf16, recipe_toml

SCHEDULES = ("steps", "time")
OPTIMIZERS = ("adam", "soap")


@dataclass
class TrainConfig:
    out: str = "runs/base"
    steps: int = 20000
    batch: int = 8  # per process: under torchrun the global batch is this times the world size
    crop: int = 128
    big_crop: int = 256
    big_crop_from: float = 0.85  # fraction of steps (of the time budget with --schedule time) after which crops grow
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
    synthetic: float = 0.0  # share of each batch drawn procedurally (vector, line, screen, pixel, comic art)
    # > 0: synthetic crops come from this many images of big_crop pixels made at the start, in
    # parallel (for an accelerator, whose step is shorter than drawing one image); 0: drawn per batch
    synthetic_pool: int = 0
    synthetic_style: int = 1  # which kinds (synthetic.KINDS_BY_STYLE): 2 adds gradient / translucent vector art
    augment: str = "flip"  # the crops' views (data.AUGMENTS): "dihedral" adds quarter turns
    N: int = 128
    M: int = 192
    hyper_width: int = 0  # the hyper-synthesis' hidden widths (0 = M and M·3/2)
    hyper_mid: int = 0
    rates: list[int] = field(default_factory=list)  # restrict to these rate indices
    init_from: str = ""  # start a new run from a weights file (.safetensors) or checkpoint (.pt)
    init: str = "klt"  # a new run's block transform: "klt" (PCA of patches) or "random"
    lambdas: str = ""  # comma-separated λ per rate, low to high; empty: the reference six
    # "cpu", "cuda" or "cuda:N" (under torchrun with "cuda" each rank takes its LOCAL_RANK's device)
    device: str = "cpu"
    # "steps": LR decay and crop growth follow the step count.  "time": they follow the training
    # time spent against --time-limit-minutes (counted across resumes), so the run ends decayed
    # when its time is up, whatever the machine's speed; --steps is then only a cap.
    schedule: str = "steps"
    optimizer: str = "adam"  # "adam" or "soap" (Adam in the eigenbasis of Shampoo's preconditioner; measured slower per CPU-minute, docs/training.md)
    # The latent codec the model is built for (udic.latent_codecs): "" = the mean-scale
    # hyperprior; "channel-context" adds the channel-conditional context nets, which a run
    # warm-started from a hyperprior's weights (--init-from) begins at zero.
    latent_codec: str = ""
    context_lr_scale: float = 1.0  # the context nets' LR relative to --lr
    # > 0: a model widened from this many latent channels (udic.train.widen) trains only
    # what widening added (new channels, gains); the old channels' weights stay frozen.
    train_new_from: int = 0

    def rate_lambdas(self) -> tuple[float, ...]:
        """The λ of each rate: the reference list unless ``--lambdas`` replaces it."""
        if not self.lambdas:
            return DEFAULT_LAMBDAS
        values = tuple(float(v) for v in self.lambdas.split(","))
        if len(values) < 2 or any(b <= a for a, b in zip(values, values[1:])) or values[0] <= 0:
            raise ValueError(f"--lambdas must be at least two increasing positive numbers, got {self.lambdas!r}")
        return values

    def check(self) -> None:
        """Refuse option combinations that would silently train something else than asked."""
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule == "time" and self.time_limit_minutes <= 0:
            raise ValueError("schedule 'time' needs --time-limit-minutes > 0: the schedule is scaled to it")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.latent_codec not in ("", DEFAULT_LATENT_CODEC, CHANNEL_CONTEXT_CODEC):
            raise ValueError(f"latent_codec must be {DEFAULT_LATENT_CODEC!r} or {CHANNEL_CONTEXT_CODEC!r}, "
                             f"got {self.latent_codec!r}")
        if not 0.0 <= self.synthetic <= 1.0:
            raise ValueError(f"synthetic must be a fraction in [0, 1], got {self.synthetic}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.init not in ("klt", "random"):
            raise ValueError(f"init must be 'klt' or 'random', got {self.init!r}")
        self.rate_lambdas()

    def lr_at(self, step: int, progress: float | None = None) -> float:
        """Warm-up, plateau, cosine decay; over [cycle_from, steps] so a finished run can be
        continued with a new cycle that again ends on a fully decayed, usable model.

        ``progress`` (the fraction of the time budget spent, ``--schedule time``) replaces
        the step count for the plateau and the decay; the warm-up is always in steps."""
        local = step - self.cycle_from
        if local < self.warmup:
            return self.lr * (max(local, 0) + 1) / self.warmup
        if progress is None:
            start = self.cycle_from + int(self.decay_from * (self.steps - self.cycle_from))
            if step < start:
                return self.lr
            t = min(1.0, (step - start) / max(1, self.steps - start))
        else:
            if progress < self.decay_from:
                return self.lr
            t = min(1.0, (progress - self.decay_from) / max(1e-9, 1.0 - self.decay_from))
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + math.cos(math.pi * t))

    def crop_at(self, step: int, progress: float | None = None) -> int:
        if progress is not None:
            return self.big_crop if progress >= self.big_crop_from else self.crop
        return self.big_crop if step >= self.big_crop_from * self.steps else self.crop


def _atomic_save(obj: object, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def evaluate(model: UdicModel, images: list[torch.Tensor], rates: list[int]) -> list[dict]:
    """Kodak-subset RD per rate; bpp is a likelihood *estimate* (labelled so in the log)."""
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for r in rates:
        bits = 0.0
        pixels = 0
        mse_sum = 0.0
        psnr_sum = 0.0
        for x in images:
            x = x.to(device)
            res = model(x, torch.tensor([float(r)], device=device))
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
        if _transforms_config(loaded.model.config) != _transforms_config(model.config):
            raise ValueError(f"{path}: architecture {loaded.model.config} differs from {model.config}")
        # A packaged LoRAM file: its base is the warm start; the per-rate deltas
        # belong to the LoRA stage, which runs again on the new base.
        state = {k: v for k, v in loaded.model.state_dict().items() if ".lora." not in k}
    # A file with rates appended above the top (train.lora's λ override) warm-starts
    # a recipe with fewer rates: rows are ordered by λ, so the recipe's rates are the
    # first rows, and the appended ones are retrained by the next LoRA stage.
    rates = model.log_gain.shape[0]
    for key in ("log_gain", "log_inv_gain"):
        if key in state and state[key].shape[0] > rates:
            state[key] = state[key][:rates]
    missing, unexpected = model.load_state_dict(state, strict=False)
    # A context model warm-started from a hyperprior: its context nets keep their
    # (zero-output) initialisation.
    from_hyperprior = not any(k.startswith("context.") for k in state)
    missing = [m for m in missing if not m.startswith("entropy_bottleneck._")
               and not (from_hyperprior and m.startswith("context."))]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")


def _transforms_config(config: ModelConfig) -> dict:
    """The parts of a config a warm start must match.

    The latent codec may change, and so may λ: a LoRAM file carries the LoRA stage's
    overridden end rates, while the base trains on the recipe's ladder.
    """
    return {k: v for k, v in config.to_dict().items() if k not in ("latent_codec", "slices", "lambdas")}


@dataclass(frozen=True)
class Ranks:
    """Where this process stands under ``torchrun`` (a plain process is rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def stream_seed(base: int, rank: int) -> int:
    """A seed of its own for each rank; rank 0 keeps ``base``, so one process trains as it always did."""
    return base + (rank << 40)


def training_device(cfg: TrainConfig, ranks: Ranks) -> torch.device:
    device = torch.device(cfg.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {cfg.device}: no CUDA device is available")
        if device.index is None:  # set_device needs an index: a rank's own GPU, else the current one
            device = torch.device("cuda", ranks.local if ranks.distributed else torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # training's shapes repeat: let cuDNN pick its fastest kernels
    elif device.type != "cpu":
        raise ValueError(f"--device must be cpu or cuda[:N], got {cfg.device!r}")
    return device


def state_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every tensor of a state dict: equal on all ranks when they hold the same weights."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def make_optimizer(cfg: TrainConfig, params: list) -> torch.optim.Optimizer:
    if cfg.optimizer == "soap":
        from .soap import SOAP

        return SOAP(params, lr=cfg.lr)
    return torch.optim.Adam(params, lr=cfg.lr)


def train(cfg: TrainConfig, progress: Callable[[str], None] = print) -> Path:
    """Train (or resume) a run in ``cfg.out``; under torchrun, one rank of a DDP run."""
    cfg.check()
    ranks = Ranks.from_env()
    device = training_device(cfg, ranks)
    started_group = False
    if ranks.distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            started_group = True
    try:
        result = _train(cfg, progress if ranks.main else (lambda _: None), ranks, device)
        if started_group:
            # Leave together: a rank that tears gloo down while another is still writing its
            # files could abort ("terminate called without an active exception", seen once in CI-like runs).
            dist.barrier()
        return result
    finally:
        if started_group:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, progress: Callable[[str], None], ranks: Ranks, device: torch.device) -> Path:
    use_bf16 = cfg.bf16 and fast_bf16(device.type)
    if cfg.bf16 and not use_bf16:
        progress("bf16 autocast off: this CPU has no AVX-512, where bf16 is emulated and slower than fp32")
    import torch.distributed as dist

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data_root = default_data_root()
    train_dir = Path(cfg.train_dir) if cfg.train_dir else data_root / "train"
    kodak_dir = Path(cfg.kodak_dir) if cfg.kodak_dir else data_root / "kodak"

    ckpt_path = out / "last.pt"
    model_cfg = ModelConfig(N=cfg.N, M=cfg.M, lambdas=cfg.rate_lambdas(),
                            latent_codec=cfg.latent_codec or DEFAULT_LATENT_CODEC,
                            hyper_width=cfg.hyper_width, hyper_mid=cfg.hyper_mid)
    torch.manual_seed(cfg.seed)  # the initial weights are a function of the seed too
    model = UdicModel(model_cfg)
    model = model.to(memory_format=torch.channels_last)

    progress(f"loading training images from {train_dir}")
    data = CropDataset(train_dir, synthetic=cfg.synthetic, synthetic_pool=cfg.synthetic_pool,
                       pool_size=cfg.big_crop, pool_seed=cfg.seed, synthetic_style=cfg.synthetic_style,
                       augment=cfg.augment)
    if data.pool:
        progress(f"{len(data.pool)} synthetic images of {cfg.big_crop} px in the pool")
    eval_images = load_eval_images(kodak_dir) if ranks.main and kodak_dir.is_dir() else []

    step = 0
    wall = 0.0
    state: dict | None = None
    if ranks.main and not ckpt_path.exists():
        for log_file in ("train_log.csv", "eval_log.csv"):
            trim_log(out / log_file, -1)  # a run that died before its first checkpoint starts over
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        step = int(state["step"])
        wall = float(state["wall"])
    elif cfg.init_from:
        load_initial_weights(model, Path(cfg.init_from))
        progress(f"initialised from {cfg.init_from}")
    elif cfg.init == "klt":
        patches = data.random_patches(cfg.seed, cfg.pca_patches, model_cfg.patch)
        model.init_linear_from_patches(patches)
        progress(f"initialised block transform from {cfg.pca_patches} patches")
    # With --schedule time the LR cycle runs over the time budget from this wall time on
    # (the start of the run, or of the time-scheduled part of a resumed one).
    schedule_wall0 = wall if state is None or state.get("schedule_wall0") is None else float(state["schedule_wall0"])

    model = model.to(device)
    if cfg.train_new_from:
        from .widen import new_channel_masks

        params = dict(model.named_parameters())
        for name, mask in new_channel_masks(model, cfg.train_new_from).items():
            if name.endswith("quantiles"):
                continue  # the auxiliary loss keeps the hyper-latents' range
            param = params[name]
            if not mask.any():
                param.requires_grad_(False)
            elif not mask.all():
                param.register_hook(lambda g, m=mask.to(device): g * m)
    main_params = [p for n, p in model.named_parameters() if not n.endswith("quantiles") and p.requires_grad]
    aux_params = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    if cfg.context_lr_scale != 1.0 and model.context is not None:
        context_ids = {id(p) for p in model.context.parameters()}
        opt = make_optimizer(cfg, [
            {"params": [p for p in main_params if id(p) not in context_ids], "lr_scale": 1.0},
            {"params": [p for p in main_params if id(p) in context_ids], "lr_scale": cfg.context_lr_scale},
        ])
    else:
        opt = make_optimizer(cfg, main_params)
    aux_opt = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    if state is not None:
        opt.load_state_dict(state["opt"])
        aux_opt.load_state_dict(state["aux_opt"])
        progress(f"resumed from {ckpt_path} at step {step} ({wall / 60:.1f} min)")
        if ranks.main:
            for log_file in ("train_log.csv", "eval_log.csv"):
                trim_log(out / log_file, step)
        del state

    net: torch.nn.Module = model
    if ranks.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # The quantiles are trained by the auxiliary loss alone, outside DDP's backward: DDP
        # manages the parameters that require gradients when it is built, so they are
        # switched off for that moment, and their gradients are averaged by hand below.
        for p in aux_params:
            p.requires_grad_(False)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        for p in aux_params:
            p.requires_grad_(True)

    if ranks.main:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        _atomic_write_text(out / "recipe.toml", recipe_toml(cfg, RECIPE_HEADER))

    lambdas = torch.tensor(model_cfg.lambdas, dtype=torch.float32, device=device)
    rate_choices = torch.tensor(cfg.rates or list(range(model_cfg.num_rates)))
    log = eval_log = None
    log_f = eval_f = None
    if ranks.main:
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
        if not ranks.main:
            return
        _atomic_save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "aux_opt": aux_opt.state_dict(),
                "step": step,
                "wall": wall,
                "model_config": model_cfg.to_dict(),
                "train_config": asdict(cfg),
                "recipe": recipe_toml(cfg, RECIPE_HEADER),
                "schedule_wall0": schedule_wall0 if cfg.schedule == "time" else None,
                "world_size": ranks.world,
            },
            ckpt_path,
        )

    eval_seconds = 0.0  # evaluation time is not training time: wall excludes it

    def run_eval() -> None:
        nonlocal eval_seconds
        if not eval_images or eval_log is None or eval_f is None:
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
    acc = torch.zeros(3, dtype=torch.float64, device=device)  # loss, bpp, PSNR since the last log line
    acc_n = 0
    t_log = time.time()
    model.train()

    def trained_seconds() -> float:
        return time.time() - t_start - eval_seconds

    def shared_clock() -> tuple[float, float]:
        """(seconds trained by this invocation, total training wall time), as rank 0 sees
        them: every rank then stops at the same step and follows the same schedule."""
        session = trained_seconds()
        if not ranks.distributed:
            return session, wall_at_start + session
        clock = torch.tensor([session, wall_at_start + session], dtype=torch.float64, device=device)
        dist.broadcast(clock, 0)
        return float(clock[0]), float(clock[1])

    budget_s = cfg.time_limit_minutes * 60
    while step < cfg.steps:
        session_s, wall_now = shared_clock()
        fraction = (wall_now - schedule_wall0) / budget_s if cfg.schedule == "time" else None
        out_of_time = fraction >= 1.0 if fraction is not None else bool(budget_s) and session_s > budget_s
        if out_of_time:
            progress("time limit reached")
            if step % cfg.eval_every:
                run_eval()  # the run's last point
            break
        lr = cfg.lr_at(step, fraction)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        crop = cfg.crop_at(step, fraction)
        x = data.batch_uint8(cfg.seed, step, cfg.batch, crop, stream=ranks.rank).to(device, non_blocking=True)
        x = x.float().div_(255.0).contiguous(memory_format=torch.channels_last)
        g = torch.Generator().manual_seed(stream_seed(cfg.seed * 1_000_003 + step, ranks.rank))
        rate = rate_choices[torch.randint(len(rate_choices), (cfg.batch,), generator=g)].to(device)
        torch.manual_seed(stream_seed(cfg.seed * 7_919 + step, ranks.rank))  # the noise in the forward pass
        res = net(x, rate.float(), autocast=use_bf16)
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
        if ranks.distributed:
            for p in aux_params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(ranks.world)
        aux_opt.step()
        step += 1
        wall = wall_at_start + trained_seconds()

        # rank 0's own batches: a sample of the global batch.  Summed where they are, in float64
        # (as Python floats would be): reading them every step would stall an accelerator's queue.
        acc += torch.stack([loss.detach(), bpp.detach().mean(),
                            (-10 * torch.log10(mse.detach().clamp_min(1e-10))).mean()]).double()
        acc_n += 1
        if step % 50 == 0 and log is not None and log_f is not None:
            acc_loss, acc_bpp, acc_psnr = acc.tolist()
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
        if step % 50 == 0:
            acc.zero_()
            acc_n = 0
            t_log = time.time()
        if step % cfg.eval_every == 0:
            run_eval()
        if ranks.main and time.time() - last_ckpt > cfg.ckpt_minutes * 60:
            save()
            last_ckpt = time.time()
    save()
    if log_f is not None and eval_f is not None:
        log_f.close()
        eval_f.close()
    if ranks.distributed:
        check_ranks_agree(model, ranks, out)
    return ckpt_path


RECIPE_HEADER = ("The resolved recipe of this run (defaults < --config file < flags).\n"
                 "Repeat it with: python -m udic.train --config recipe.toml")


def check_ranks_agree(model: torch.nn.Module, ranks: Ranks, out: Path) -> None:
    """Every rank's weight digest, written by rank 0 to ``ranks.json``; ranks that disagree
    mean DDP did not keep them in step, and the run fails rather than save a wrong model."""
    import torch.distributed as dist

    digests: list[str | None] = [None] * ranks.world
    dist.all_gather_object(digests, state_digest(model))
    if ranks.main:
        _atomic_write_text(out / "ranks.json",
                           json.dumps({"world_size": ranks.world, "state_sha256": digests}, indent=1) + "\n")
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks hold different weights after training: {digests}")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
