"""SOAP, the second-order optimiser a recipe can choose instead of Adam."""

from __future__ import annotations

import copy

import pytest
import torch

from udic.train.soap import SOAP


def _problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # Badly conditioned least squares: inputs whose scales span two decades.
    a = torch.randn(64, 12, generator=g) * torch.logspace(-1, 1, 12)
    return a, torch.randn(64, 6, generator=g)


def _run(opt_cls, steps: int, **kw) -> tuple[torch.nn.Parameter, list[float]]:
    a, b = _problem()
    w = torch.nn.Parameter(torch.zeros(12, 6))
    bias = torch.nn.Parameter(torch.zeros(6))
    opt = opt_cls([w, bias], **kw)
    losses = []
    for _ in range(steps):
        loss = ((a @ w + bias - b) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return w, losses


def test_without_rotation_soap_is_adam() -> None:
    w_soap, l_soap = _run(SOAP, 20, lr=1e-2, max_precond_dim=0)
    w_adam, l_adam = _run(torch.optim.Adam, 20, lr=1e-2)
    torch.testing.assert_close(w_soap.detach(), w_adam.detach(), rtol=1e-6, atol=1e-7)
    assert l_soap == pytest.approx(l_adam, rel=1e-6)


def test_rotation_changes_the_steps_and_solves_the_problem() -> None:
    w_soap, l_soap = _run(SOAP, 300, lr=3e-2, precondition_frequency=5)
    w_adam, _ = _run(torch.optim.Adam, 300, lr=3e-2)
    assert not torch.allclose(w_soap, w_adam)
    a, b = _problem()
    best = torch.linalg.lstsq(torch.cat([a, torch.ones(64, 1)], 1), b).solution
    optimum = float(((torch.cat([a, torch.ones(64, 1)], 1) @ best - b) ** 2).mean())
    assert l_soap[-1] < optimum + 0.05 * (l_soap[0] - optimum)


def test_state_dict_resumes_exactly() -> None:
    a, b = _problem()
    w = torch.nn.Parameter(torch.zeros(12, 6))
    opt = SOAP([w], lr=1e-2, precondition_frequency=3)

    def step(opt: SOAP, w: torch.nn.Parameter) -> None:
        opt.zero_grad()
        ((a @ w - b) ** 2).mean().backward()
        opt.step()

    for _ in range(4):
        step(opt, w)
    w2 = torch.nn.Parameter(w.detach().clone())
    opt2 = SOAP([w2], lr=1e-2, precondition_frequency=3)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for _ in range(4):
        step(opt, w)
        step(opt2, w2)
    assert torch.equal(w, w2)


def test_a_recipe_trains_with_soap_and_resumes(tmp_path) -> None:  # noqa: ANN001 - pytest's tmp_path
    import numpy as np
    from PIL import Image

    from udic.train.loop import TrainConfig, train

    images = tmp_path / "train"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 72, 3), dtype=np.uint8)).save(images / f"{i}.png")
    cfg = TrainConfig(out=str(tmp_path / "run"), steps=2, batch=2, crop=64, big_crop=64, warmup=1, threads=1,
                      bf16=False, eval_every=10_000, ckpt_minutes=1e9, train_dir=str(images),
                      kodak_dir=str(tmp_path / "none"), pca_patches=32, N=8, M=12, optimizer="soap")
    train(cfg, progress=lambda s: None)
    cfg.steps = 3
    train(cfg, progress=lambda s: None)  # resumes the optimiser's bases and moments
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["step"] == 3
    assert any(s.get("QL") is not None for s in state["opt"]["state"].values())
