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

Usage: ``python -m udic.train.widen SRC.pt --M 384 --lambdas ... --out runs/wide/init.pt``;
then ``python -m udic.train --M 384 --lambdas ... --init-from runs/wide/init.pt ...``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from ..models import ModelConfig, UdicModel
from .data import CropDataset, default_data_root


def _load(path: Path) -> UdicModel:
    """A model from a training checkpoint (.pt) or a weights file (.safetensors; base only)."""
    if path.suffix == ".pt":
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = UdicModel(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict({k: v for k, v in state["model"].items() if not k.startswith("context.")},
                              strict=False)
        return model
    from .. import modelfile

    return modelfile.load(path).model


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m udic.train.widen", description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="training checkpoint (.pt) or weights file (.safetensors)")
    ap.add_argument("--M", type=int, required=True, help="latent channels of the widened model")
    ap.add_argument("--lambdas", required=True, help="comma-separated λ ladder, beginning with the source's")
    ap.add_argument("--hyper-width", type=int, default=0)
    ap.add_argument("--hyper-mid", type=int, default=0)
    ap.add_argument("--crops", type=int, default=1024, help="64×64 training crops for the residual's statistics")
    ap.add_argument("--train-dir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="checkpoint for --init-from")
    args = ap.parse_args(argv)
    src = _load(args.source)
    data = CropDataset(args.train_dir or default_data_root() / "train")
    crops = data.random_patches(args.seed, args.crops, 64).view(-1, 3, 64, 64)
    lambdas = tuple(float(v) for v in args.lambdas.split(","))
    dst = widen(src, args.M, lambdas, crops, args.hyper_width, args.hyper_mid)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": dst.state_dict(), "model_config": dst.config.to_dict()}, args.out)
    print(f"wrote {args.out}: {dst.config.to_dict()}")


if __name__ == "__main__":
    main()
