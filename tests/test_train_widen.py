"""Widening a trained model (udic.train.widen): old rates untouched, new channels carry the
residual, and the widened model trains, exports and codes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udic import hub, modelfile
from udic.codec import Codec
from udic.imageio import LoadedImage
from udic.models import ModelConfig, UdicModel
from udic.rate import RATE_UNIT, Rate
from udic.testing import build_tiny_model
from udic.train.export import load_checkpoint
from udic.train.loop import TrainConfig, train
from udic.train.widen import blocks, carry_deltas, residual_channels, widen


def _crops(seed: int = 0, count: int = 8, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = torch.stack([(xx * 7 % 32) / 32, (yy * 5 % 32) / 32, ((xx + yy) % 16) / 16]).float()
    return (base[None] * 0.6 + 0.4 * torch.rand(count, 3, size, size, generator=g)).clamp(0, 1)


def _source() -> UdicModel:
    model = build_tiny_model()
    for layer in model.lora_modules():
        layer.lora.clear()  # a base: widening works on weights without per-rate deltas
    return model.eval()


def test_more_rates_alone_leave_the_old_rates_bit_identical() -> None:
    src = _source()
    lambdas = tuple(src.config.lambdas) + (src.config.lambdas[-1] * 4,)
    wide = widen(src, src.config.M, lambdas, _crops()).eval()
    x = _crops(1, 2)
    with torch.no_grad():
        for rate in range(src.config.num_rates):
            r = torch.tensor([float(rate)] * 2)
            a, b = src(x, r), wide(x, r)
            assert torch.equal(a.x_hat, b.x_hat) and torch.equal(a.y_bits, b.y_bits), rate
    step = 0.5 * math.log(4)
    assert torch.allclose(wide.log_gain[-1], src.log_gain[-1] + step)
    assert torch.allclose(wide.log_inv_gain[-1], src.log_inv_gain[-1] - step)


def test_new_channels_start_silent_in_the_non_linear_branches() -> None:
    src = _source()
    m0, M = src.config.M, src.config.M + 8
    wide = widen(src, M, tuple(src.config.lambdas), _crops(), hyper_width=m0, hyper_mid=m0 * 3 // 2)
    assert wide.config.M == M and wide.config.hyper_width == m0
    s, w = src.state_dict(), wide.state_dict()
    assert torch.equal(w["g_a.linear.weight"][:m0], s["g_a.linear.weight"])
    last = len(src.g_a.res) - 1
    assert not w[f"g_a.res.{last}.weight"][m0:].any()
    assert not w["g_s.stages.0.0.weight"][m0:].any()
    assert not w["h_a.0.weight"][:, m0:].any()
    head = f"h_s.{len(src.h_s) - 1}"
    assert torch.equal(w[f"{head}.weight"][M:M + m0], s[f"{head}.weight"][m0:])  # old means
    assert not w[f"{head}.weight"][M + m0:].any()  # new means start at zero
    assert torch.equal(w[f"{head}.weight"][m0], s[f"{head}.weight"][m0 - 1])  # scales follow the last channel
    assert torch.equal(w["log_gain"][:, m0:], w["log_gain"][:, m0 - 1:m0].expand(-1, 8))
    # The hidden widths stayed those of the source, so its hyper-synthesis weights carried over.
    assert torch.equal(w["h_s.2.weight"], s["h_s.2.weight"])


def test_residual_channels_predict_what_the_model_leaves_out() -> None:
    src = _source()
    crops = _crops(2, 16)
    U, A = residual_channels(src, crops, 6)
    assert torch.allclose(U @ U.T, torch.eye(6), atol=1e-5)
    with torch.no_grad():
        top = torch.tensor([float(src.config.num_rates - 1)] * crops.shape[0])
        r = blocks(crops - src(crops, top).x_hat.clamp(0, 1), src.config.patch)
    x = blocks(crops, src.config.patch)
    mended = r - (x @ A.T) @ U
    assert float((mended**2).sum()) < 0.9 * float((r**2).sum())


def test_widening_refuses_what_it_cannot_keep() -> None:
    src = _source()
    with pytest.raises(ValueError, match="narrower"):
        widen(src, src.config.M - 1, tuple(src.config.lambdas), _crops())
    with pytest.raises(ValueError, match="ladder"):
        widen(src, src.config.M, (1e-3, 2e-3), _crops())


def _train_dir(tmp_path: Path) -> Path:
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        img = rng.integers(0, 256, (64, 80, 3)).astype(np.uint8)
        Image.fromarray(img).save(train_dir / f"img{i}.webp", lossless=True)
    return train_dir


def _widened_run(tmp_path: Path, train_new_from: int = 0) -> tuple[UdicModel, dict, TrainConfig]:
    train_dir = _train_dir(tmp_path)
    src = _source()
    lambdas = tuple(src.config.lambdas) + (src.config.lambdas[-1] * 3,)
    wide = widen(src, src.config.M + 4, lambdas, _crops(), hyper_width=src.config.M,
                 hyper_mid=src.config.M * 3 // 2)
    init = tmp_path / "init.pt"
    torch.save({"model": wide.state_dict(), "model_config": wide.config.to_dict()}, init)
    cfg = TrainConfig(out=str(tmp_path / "run"), steps=2, batch=2, crop=64, big_crop=64, warmup=1, threads=1,
                      bf16=False, eval_every=10_000, ckpt_minutes=1e9, train_dir=str(train_dir),
                      kodak_dir=str(tmp_path / "none"), N=wide.config.N, M=wide.config.M,
                      hyper_width=wide.config.hyper_width, hyper_mid=wide.config.hyper_mid,
                      lambdas=",".join(repr(v) for v in lambdas), init_from=str(init),
                      train_new_from=train_new_from)
    model, state = load_checkpoint(train(cfg, progress=lambda s: None))
    assert ModelConfig.from_dict(state["model_config"]) == wide.config
    return wide, state, cfg


def test_training_only_the_new_channels_keeps_every_old_weight(tmp_path: Path) -> None:
    wide, state, _ = _widened_run(tmp_path, train_new_from=_source().config.M)
    before, after = wide.state_dict(), state["model"]
    m0, M = _source().config.M, wide.config.M
    head = f"h_s.{len(wide.h_s) - 1}.weight"
    assert torch.equal(after["g_a.linear.weight"][:m0], before["g_a.linear.weight"][:m0])
    assert not torch.equal(after["g_a.linear.weight"][m0:], before["g_a.linear.weight"][m0:])
    assert torch.equal(after[head][:m0], before[head][:m0])
    assert torch.equal(after[head][M:M + m0], before[head][M:M + m0])
    assert not torch.equal(after[head][m0:M], before[head][m0:M])
    for key in ("h_a.0.weight", "h_s.0.weight", "g_s.out.weight", "g_s.stages.1.0.weight"):
        assert torch.equal(after[key], before[key]), key
    assert not torch.equal(after["log_gain"], before["log_gain"])


def test_a_widened_model_trains_exports_and_codes(tmp_path: Path) -> None:
    wide, state, cfg = _widened_run(tmp_path)
    model, _ = load_checkpoint(Path(cfg.out) / "last.pt")
    lambdas = wide.config.lambdas
    train_dir = Path(cfg.train_dir)
    data = modelfile.export_bytes(model, info={"steps": state["step"]})
    codec = Codec(modelfile.load_bytes(data), hub.model_id_for_bytes(data))
    rgb = np.asarray(Image.open(train_dir / "img0.webp").convert("RGB"))
    top = float(len(lambdas) - 1)
    enc = codec.encode(LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None), top)
    first = np.asarray(codec.decode(enc.data).image)
    assert first.shape == rgb.shape
    assert np.array_equal(first, np.asarray(codec.decode(enc.data).image))


def test_carried_deltas_code_their_rates_as_the_donor_does() -> None:
    donor = build_tiny_model().eval()  # with a rate-2 delta on three layers
    lambdas = tuple(donor.config.lambdas) + (donor.config.lambdas[-1] * 3,)
    wide = widen(_source(), donor.config.M, lambdas, _crops()).eval()
    carry_deltas(wide, donor, [2])
    x = _crops(3, 2)
    donor.merge_rate(Rate(2 * RATE_UNIT, donor.config.num_rates))
    wide.merge_rate(Rate(2 * RATE_UNIT, wide.config.num_rates))
    with torch.no_grad():
        r = torch.tensor([2.0, 2.0])
        a, b = donor(x, r), wide(x, r)
    assert torch.allclose(a.x_hat, b.x_hat, atol=1e-6) and torch.allclose(a.y_bits, b.y_bits, atol=1e-4)


def test_carried_deltas_are_padded_where_the_model_grew() -> None:
    donor = build_tiny_model()
    m0 = donor.config.M
    wide = widen(_source(), m0 + 4, tuple(donor.config.lambdas), _crops(), hyper_width=m0, hyper_mid=m0 * 3 // 2)
    with torch.no_grad():
        donor.h_s[-1].add_lora("r2", rank=1, alpha=1.0).B.normal_(0.0, 0.1)
    carry_deltas(wide, donor, [2])
    M = wide.config.M
    got = wide.h_s[-1].lora["r2"].delta()
    want = donor.h_s[-1].lora["r2"].delta()
    assert torch.equal(got[:m0], want[:m0]) and torch.equal(got[M:M + m0], want[m0:])
    assert not got[m0:M].any() and not got[M + m0:].any()
    stage = wide.g_s.stages[0][0].lora["r2"].delta()  # ConvTranspose: grew in its first dimension
    assert torch.equal(stage[:m0], donor.g_s.stages[0][0].lora["r2"].delta()) and not stage[m0:].any()
    assert torch.equal(wide.log_gain[2, :m0], donor.log_gain[2])
