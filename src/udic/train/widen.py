"""Widen a trained model's latent and extend its λ ladder, keeping what it has learned.

Why: the latent's width caps the fidelity a block transform can reach (the top 128
of 768 KLT components of a 16×16 RGB block reconstruct Kodak at 32 dB at best, 384 at
49 dB), and training a wider model from scratch costs more CPU than this project has.
So the new channels start as the principal components of what the old block transform
leaves out, and the trained model stays exactly as it was on its old channels:

- block transforms: the new synthesis rows are the top eigenvectors U of what the old
  model leaves out at its top rate (the residual r), the new analysis rows the linear
  regression of Uᵀr on the pixels; the non-linear branches start at zero on them;
- hyper-analysis: zero weights on the new channels (it sees them once trained);
- hyper-synthesis: each new channel's log-scale starts as a copy of the old
  lowest-energy channel's, shifted by the log-ratio of their spreads, so it follows the
  rate and the local activity from step one; means start at zero;
- gains: new rates extrapolate the old top rate by the high-rate optimum
  (½·ln of the λ ratio), new channels take the last old channel's gains.

Usage (recipes/base-wide.toml):

1. ``python -m udic.train.widen SRC.pt --M 384 --lambdas ... --out runs/wide/init.pt``;
2. ``python -m udic.train --config recipes/base-wide.toml`` (``train_new_from``: only the new
   channels and the gains train, ``new_channel_masks``);
3. ``python -m udic.train.widen runs/base-wide/last.pt --carry-deltas-from SRC.safetensors
   --carry-rates 0,1,2,4 --out runs/lora-wide/last.pt``: the source's LoRAM deltas for the
   rates it already served (``carry_deltas``), then ``python -m udic.train.lora --out
   runs/lora-wide ...`` trains the deltas of the other rates.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from ..models import ModelConfig, UdicModel
from .data import CropDataset, default_data_root
from .lora import load_base


def blocks(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) → (B·H/p·W/p, 3·p·p), each row one block in the weights' layout."""
    b, c, h, w = images.shape
    t = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return t.permute(0, 2, 4, 1, 3, 5).reshape(-1, c * patch * patch)


@torch.no_grad()
def residual_channels(model: UdicModel, crops: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """New channels for what ``model`` leaves out of ``crops`` at its top rate.

    Returns (synthesis rows U, analysis rows A), each (count, 3·p·p): U = the top
    eigenvectors of the second moment of the blocks' residual r, and A = the linear
    regression of Uᵀr on the source block x.  The new channels must predict the residual
    from the pixels because the old channels' non-linear branches already mend part of
    what the linear pair misses: coding Uᵀx would count that part twice.
    """
    c = model.config
    model.eval()
    top = torch.tensor([float(c.num_rates - 1)])
    xs, rs = [], []
    for i in range(0, crops.shape[0], 16):
        x = crops[i : i + 16]
        x_hat = model(x, top.expand(x.shape[0])).x_hat.clamp(0, 1)
        xs.append(blocks(x, c.patch).double())
        rs.append(blocks(x - x_hat, c.patch).double())
    x, r = torch.cat(xs), torch.cat(rs)
    evals, evecs = torch.linalg.eigh(r.T @ r / r.shape[0])
    U = evecs[:, torch.argsort(evals, descending=True)[:count]]  # (3pp, count)
    cxx = x.T @ x / x.shape[0]
    crx = (r @ U).T @ x / x.shape[0]  # E[Uᵀr xᵀ]
    ridge = 1e-6 * cxx.diagonal().mean() * torch.eye(cxx.shape[0], dtype=cxx.dtype)
    A = torch.linalg.solve(cxx + ridge, crx.T).T  # cxx symmetric
    return U.T.contiguous().float(), A.contiguous().float()


@torch.no_grad()
def widen(src: UdicModel, M: int, lambdas: tuple[float, ...], crops: torch.Tensor,
          hyper_width: int = 0, hyper_mid: int = 0) -> UdicModel:
    """``src`` with ``M`` latent channels and the λ ladder ``lambdas`` (which must begin
    with ``src``'s); see the module docstring for how each new weight starts."""
    old = src.config
    if M < old.M:
        raise ValueError(f"--M {M} is narrower than the source's {old.M}")
    if tuple(lambdas[: old.num_rates]) != tuple(old.lambdas):
        raise ValueError(f"the λ ladder must begin with the source's {list(old.lambdas)}")
    if old.channel_context:
        raise ValueError("widening a channel-context model is not supported: widen its hyperprior view")
    cfg = ModelConfig(N=old.N, M=M, patch=old.patch, lambdas=tuple(lambdas), adapter_slots=old.adapter_slots,
                      hyper_width=hyper_width or old.hyper_width or old.M,
                      hyper_mid=hyper_mid or old.hyper_mid or old.M * 3 // 2)
    dst = UdicModel(cfg)
    src_state = src.state_dict()
    dst_state = dst.state_dict()
    m0, new = old.M, M - old.M
    for key, value in dst_state.items():
        if key in src_state and src_state[key].shape == value.shape:
            value.copy_(src_state[key])
    synth, analysis = residual_channels(src, crops, new)
    patches = blocks(crops, old.patch)
    shape = (new, 3, old.patch, old.patch)

    def grow(key: str, dim: int, fill: torch.Tensor | None = None) -> None:
        """Copy the source tensor into the first slots along ``dim``; the rest = ``fill`` or 0."""
        s, d = src_state[key], dst_state[key]
        d.zero_()
        d.narrow(dim, 0, s.shape[dim]).copy_(s)
        if fill is not None:
            d.narrow(dim, s.shape[dim], d.shape[dim] - s.shape[dim]).copy_(fill)

    grow("g_a.linear.weight", 0, analysis.view(shape))
    grow("g_a.linear.bias", 0)
    grow("g_s.linear.weight", 0, synth.view(shape))
    last = len(src.g_a.res) - 1
    grow(f"g_a.res.{last}.weight", 0)
    grow(f"g_a.res.{last}.bias", 0)
    grow("g_s.stages.0.0.weight", 0)
    grow("h_a.0.weight", 1)

    # Spread of the new channels relative to the old lowest-energy one (channel m0-1).
    W = src.g_a.linear.weight.reshape(m0, -1)
    y_last = patches @ W[m0 - 1] + src.g_a.linear.bias[m0 - 1]
    y_new = patches @ analysis.T
    log_ratio = torch.zeros(0) if new == 0 else (y_new.std(0).clamp_min(1e-6) / y_last.std().clamp_min(1e-6)).log()

    head = f"h_s.{len(src.h_s) - 1}"
    w_s, b_s = src_state[f"{head}.weight"], src_state[f"{head}.bias"]
    w_d, b_d = dst_state[f"{head}.weight"], dst_state[f"{head}.bias"]
    w_d.zero_()
    b_d.zero_()
    w_d[:m0] = w_s[:m0]  # log-scales
    b_d[:m0] = b_s[:m0]
    w_d[m0:M] = w_s[m0 - 1]
    b_d[m0:M] = b_s[m0 - 1] + log_ratio
    w_d[M:M + m0] = w_s[m0:]  # means
    b_d[M:M + m0] = b_s[m0:]

    for key, sign in (("log_gain", 1.0), ("log_inv_gain", -1.0)):
        s, d = src_state[key], dst_state[key]
        d[: old.num_rates, :m0] = s
        for r in range(old.num_rates, cfg.num_rates):
            step = 0.5 * math.log(lambdas[r] / lambdas[r - 1])
            d[r, :m0] = d[r - 1, :m0] + sign * step
        d[:, m0:] = d[:, m0 - 1 : m0]
    dst.load_state_dict(dst_state)
    return dst


@torch.no_grad()
def carry_deltas(wide: UdicModel, donor: UdicModel, rates: list[int]) -> None:
    """Give ``wide`` the LoRAM deltas and gains ``donor`` (the model it was widened from,
    with its per-rate deltas) trained for ``rates``: the widened model then codes those
    rates as the donor does, plus whatever its new channels add.

    Deltas are padded with zeros where widening grew a weight (output rows of the new
    channels, input columns fed by them; the hyper-synthesis head's log-scale and mean
    halves separately), so they change nothing on the new channels."""
    m0, M = donor.config.M, wide.config.M
    if [wide.config.lambdas[r] for r in rates] != [donor.config.lambdas[r] for r in rates]:
        raise ValueError(f"rates {rates} have other λ in the two models")
    donor_layers = dict(donor.named_modules())
    head = f"h_s.{len(wide.h_s) - 1}"
    for name, layer in wide.named_modules():
        lora = getattr(layer, "lora", None)
        if not isinstance(lora, torch.nn.ModuleDict) or name not in donor_layers:
            continue
        for r in rates:
            key = f"r{r}"
            if key not in donor_layers[name].lora:
                continue
            src = donor_layers[name].lora[key]
            dst = layer.add_lora(key, src.rank, src.alpha)
            d0, d1 = layer.weight.shape[:2]
            s0, s1 = donor_layers[name].weight.shape[:2]
            dst.B.zero_()
            if name == head and d0 != s0:
                dst.B[:m0] = src.B[:m0]
                dst.B[M:M + m0] = src.B[m0:]
            else:
                dst.B[:s0] = src.B
            a = torch.zeros(src.rank, d1, *layer.weight.shape[2:])
            a[:, :s1] = src.A.view(src.rank, s1, *layer.weight.shape[2:])
            dst.A.copy_(a.flatten(1))
    for r in rates:
        wide.log_gain[r, :m0] = donor.log_gain[r]
        wide.log_inv_gain[r, :m0] = donor.log_inv_gain[r]


def new_channel_masks(model: UdicModel, old_M: int) -> dict[str, torch.Tensor]:
    """Gradient masks (1 = trains) that let a widened model learn only what widening added.

    Trainable: the new channels' rows of both block transforms, of the analysis' last
    convolution and of the synthesis' first one, their log-scales and means in the
    hyper-synthesis' head, and every gain (a rate's gains act on that rate alone).  Frozen:
    everything the old channels compute with, including the hyper-analysis, so the
    hyper-latents and the old rates' entropy model stay as they were.  A rate keeps its
    old quality unless the new channels improve it; the rates that need the old weights
    to move get them through their own LoRAM deltas.
    """
    c = model.config
    M = c.M
    if not 0 < old_M <= M:
        raise ValueError(f"old_M must be in 1…{M}, got {old_M}")
    masks: dict[str, torch.Tensor] = {}
    params = dict(model.named_parameters())

    def rows(name: str, spans: list[tuple[int, int]]) -> None:
        m = torch.zeros_like(params[name])
        for a, b in spans:
            m[a:b] = 1
        masks[name] = m

    new = [(old_M, M)]
    rows("g_a.linear.weight", new)
    rows("g_a.linear.bias", new)
    rows("g_s.linear.weight", new)
    last = len(model.g_a.res) - 1
    rows(f"g_a.res.{last}.weight", new)
    rows(f"g_a.res.{last}.bias", new)
    rows("g_s.stages.0.0.weight", new)
    head = f"h_s.{len(model.h_s) - 1}"
    rows(f"{head}.weight", [(old_M, M), (M + old_M, 2 * M)])
    rows(f"{head}.bias", [(old_M, M), (M + old_M, 2 * M)])
    for name in ("log_gain", "log_inv_gain"):
        masks[name] = torch.ones_like(params[name])
    for name, p in params.items():
        masks.setdefault(name, torch.zeros_like(p))
    return masks


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m udic.train.widen", description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="training checkpoint (.pt) or weights file (.safetensors)")
    ap.add_argument("--M", type=int, default=0, help="latent channels of the widened model")
    ap.add_argument("--lambdas", default="", help="comma-separated λ ladder, beginning with the source's")
    ap.add_argument("--hyper-width", type=int, default=0)
    ap.add_argument("--hyper-mid", type=int, default=0)
    ap.add_argument("--crops", type=int, default=1024, help="64×64 training crops for the residual's statistics")
    ap.add_argument("--train-dir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="checkpoint for --init-from")
    ap.add_argument("--carry-deltas-from", type=Path, default=None, metavar="MODEL",
                    help="instead: SOURCE is a trained widened checkpoint; write a LoRAM run checkpoint "
                    "(for python -m udic.train.lora --out DIR, as DIR/last.pt) holding MODEL's deltas and gains "
                    "for --carry-rates, which that run then counts as done")
    ap.add_argument("--carry-rates", default="", help="comma-separated rates whose deltas to carry")
    args = ap.parse_args(argv)
    if args.carry_deltas_from is not None:
        return _carry_main(args)
    if not args.M or not args.lambdas:
        ap.error("widening needs --M and --lambdas")
    src = load_base(args.source)[0]
    data = CropDataset(args.train_dir or default_data_root() / "train")
    crops = data.random_patches(args.seed, args.crops, 64).view(-1, 3, 64, 64)
    lambdas = tuple(float(v) for v in args.lambdas.split(","))
    dst = widen(src, args.M, lambdas, crops, args.hyper_width, args.hyper_mid)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": dst.state_dict(), "model_config": dst.config.to_dict()}, args.out)
    print(f"wrote {args.out}: {dst.config.to_dict()}")


def _carry_main(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from .export import load_checkpoint
    from .lora import LoraConfig

    wide, state = load_checkpoint(args.source)
    donor = load_base(args.carry_deltas_from)[0]
    rates = [int(r) for r in args.carry_rates.split(",") if r]
    carry_deltas(wide, donor, rates)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": wide.state_dict(), "lora": wide.lora_spec(), "done": rates, "step": 0, "wall": 0.0,
                "current": None, "opt": None, "model_config": wide.config.to_dict(), "wall_per_rate": {},
                "rate_start_wall": 0.0, "train_config": asdict(LoraConfig(base=str(args.source)))}, args.out)
    print(f"wrote {args.out}: deltas of rates {rates} from {args.carry_deltas_from}")


if __name__ == "__main__":
    main()
