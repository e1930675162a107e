"""A tiny, non-degenerate udic model for tests and tools that need no trained weights.

It lives in the package (not in ``tests/`` or ``tools/``) because both the test suite
and the fuzzer build it, and the package must not import from either.  The model has
the real network's shape, a few channels wide: its block transform is a DCT basis so
it reconstructs images roughly, and it carries a rate-2 LoRA delta so the adapter
paths are exercised too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from .models import UdicModel

TINY_N = 8
TINY_M = 12


def dct_basis(count: int, patch: int) -> torch.Tensor:
    """``count`` orthonormal 2-D DCT-II atoms per colour plane, lowest frequencies first."""
    import torch

    n = np.arange(patch)
    freqs = sorted(((u, v) for u in range(patch) for v in range(patch)), key=lambda f: (f[0] + f[1], f))
    atoms = []
    for u, v in freqs:
        cu = np.cos(np.pi * (n + 0.5) * u / patch) * (np.sqrt(1 / patch) if u == 0 else np.sqrt(2 / patch))
        cv = np.cos(np.pi * (n + 0.5) * v / patch) * (np.sqrt(1 / patch) if v == 0 else np.sqrt(2 / patch))
        for c in range(3):
            w = np.zeros((3, patch, patch))
            w[c] = np.outer(cu, cv)
            atoms.append(w)
            if len(atoms) == count:
                return torch.from_numpy(np.stack(atoms)).float()
    raise ValueError("too many atoms")


def build_tiny_model(seed: int = 0, channel_context: bool = False, M: int = TINY_M) -> UdicModel:
    """A non-degenerate tiny UdicModel with a rate-2 LoRA: the fuzz seeds and the tests' fixture model.

    ``channel_context``: the channel-conditional latent codec, its context nets'
    (zero-initialised) last layers set to small random weights so they matter.  ``M``: more
    DCT atoms reconstruct more finely (a stand-in for the high-fidelity model)."""
    import torch

    from .models import CHANNEL_CONTEXT_CODEC, DEFAULT_LATENT_CODEC, ModelConfig, UdicModel

    torch.manual_seed(seed)
    codec = CHANNEL_CONTEXT_CODEC if channel_context else DEFAULT_LATENT_CODEC
    model = UdicModel(ModelConfig(N=TINY_N, M=M, latent_codec=codec))
    with torch.no_grad():
        basis = dct_basis(model.config.M, model.config.patch)
        model.g_a.linear.weight.copy_(basis)
        model.g_a.linear.bias.zero_()
        model.g_s.linear.weight.copy_(basis)
        model.g_s.linear.bias.zero_()
        model.h_a[-1].weight.mul_(15.0)
        model.g_a.res[-1].weight.normal_(0.0, 0.02)
        model.g_a.res[-1].bias.normal_(0.0, 0.02)
        model.g_s.out.weight.normal_(0.0, 0.01)
        model.g_s.out.bias.normal_(0.0, 0.01)
        for layer in (model.g_a.res[2], model.g_s.stages[0][0], model.h_s[2]):
            delta = layer.add_lora("r2", rank=2, alpha=2.0)
            delta.B.normal_(0.0, 0.02)
        if model.context is not None:
            for net in model.context.nets:
                net[-1].weight.normal_(0.0, 0.05)
                net[-1].bias.normal_(0.0, 0.05)
    model.entropy_bottleneck.update(force=True)
    return model.eval()


def export_tiny_model(directory: Path, seed: int = 0, name: str = "fuzz") -> tuple[Path, str]:
    """Write ``<name>-<id>.safetensors`` (a name the hub finds in a cache dir); returns (path, id)."""
    from . import hub, modelfile

    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{name}.tmp.safetensors"
    modelfile.save(build_tiny_model(seed), tmp)
    model_id = hub.model_id_for_file(tmp)
    path = directory / f"{name}-{model_id}.safetensors"
    os.replace(tmp, path)
    return path, model_id


@contextlib.contextmanager
def isolated_model_env(cache: Path) -> Iterator[None]:
    """Let the hub find models in ``cache`` only: no user config, no download URLs."""
    saved = {k: os.environ.get(k) for k in ("UDIC_CACHE_DIR", "UDIC_CONFIG", "UDIC_MODEL_URLS", "XDG_CONFIG_HOME")}
    os.environ["UDIC_CACHE_DIR"] = str(cache)
    os.environ["XDG_CONFIG_HOME"] = str(cache / "no-config")
    os.environ.pop("UDIC_CONFIG", None)
    os.environ.pop("UDIC_MODEL_URLS", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
