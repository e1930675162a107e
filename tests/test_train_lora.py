"""LoRAM training: frozen base, progressive per-rate deltas, exported and merged at load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udic import hub, modelfile
from udic.codec import Codec
from udic.imageio import LoadedImage
from udic.models import ModelConfig, UdicModel
from udic.train.export import load_checkpoint
from udic.train.lora import LoraConfig, add_rate_delta, train_lora


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = UdicModel(ModelConfig(N=8, M=12))
    with torch.no_grad():
        for layer in (model.g_a.res[-1], model.g_s.out):
            layer.weight.normal_(0, 0.05)
    path = tmp_path / "base.safetensors"
    modelfile.save(model, path)
    return path


@pytest.fixture()
def train_dir(tmp_path: Path) -> Path:
    d = tmp_path / "train"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        img = rng.integers(0, 256, (72, 72, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / f"t{i}.png")
    return d


def test_new_delta_starts_from_its_neighbour(base: Path) -> None:
    model = modelfile.load(base).model
    add_rate_delta(model, 3, rank=2, alpha=2.0, init_from=None)
    for layer in model.lora_modules():
        assert torch.count_nonzero(layer.lora["r3"].B) == 0  # a fresh delta is exactly zero
        layer.lora["r3"].B.data.normal_()
    add_rate_delta(model, 2, rank=2, alpha=2.0, init_from=3)
    for layer in model.lora_modules():
        assert torch.equal(layer.lora["r2"].A, layer.lora["r3"].A)
        assert torch.equal(layer.lora["r2"].B, layer.lora["r3"].B)


def test_progressive_training_keeps_base_and_exports(tmp_path: Path, base: Path, train_dir: Path) -> None:
    cfg = LoraConfig(base=str(base), out=str(tmp_path / "lora"), rates=[3, 2], rank=2, alpha=2.0,
                     steps_per_rate=3, batch=2, crop=64, threads=1, bf16=False,
                     train_dir=str(train_dir), kodak_dir=str(tmp_path / "none"))
    ckpt = train_lora(cfg, progress=lambda s: None)
    before = modelfile.load(base).model.state_dict()
    model, state = load_checkpoint(ckpt)
    assert state["done"] == [3, 2]
    after = model.state_dict()
    for name, value in before.items():
        if "log_gain" in name or "log_inv_gain" in name or name.startswith("entropy_bottleneck._"):
            continue
        assert torch.equal(value, after[name]), f"base weight {name} changed"
    # Only the trained rates' gain rows moved.
    assert torch.equal(before["log_gain"][[0, 1, 4, 5]], after["log_gain"][[0, 1, 4, 5]])
    assert any(torch.count_nonzero(layer.lora["r2"].B) > 0 for layer in model.lora_modules())

    data = modelfile.export_bytes(model)
    codec = Codec(modelfile.load_bytes(data), hub.model_id_for_bytes(data))
    rgb = np.asarray(Image.open(next(train_dir.iterdir())).convert("RGB"))
    image = LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None)
    enc = codec.encode(image, 2.0)  # rate 2 has a delta: merged at load, decoded exactly
    out = np.asarray(codec.decode(enc.data).image)
    assert out.shape == rgb.shape
    plain = Codec(modelfile.load(base), hub.model_id_for_file(base))
    assert plain.encode(image, 2.0).data[30:] != enc.data[30:]
