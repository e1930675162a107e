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
from udic.train.export import base_training, export, load_checkpoint
from udic.train.lora import LoraConfig, add_rate_delta, extend_rates, nearest_trained, train_lora


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


def test_neighbour_rule() -> None:
    # Next to the base rate a delta starts at zero; further out from the nearest trained one.
    assert nearest_trained(2, [], base_rate=3) is None
    assert nearest_trained(1, [2], base_rate=3) == 2
    assert nearest_trained(4, [2, 1, 0], base_rate=3) is None
    assert nearest_trained(5, [2, 1, 0, 4], base_rate=3) == 4
    assert nearest_trained(0, [], base_rate=-1) is None
    assert nearest_trained(0, [3], base_rate=-1) == 3


def test_hyper_networks_get_their_own_rank(base: Path) -> None:
    model = modelfile.load(base).model
    add_rate_delta(model, 1, rank=2, alpha=1.0, init_from=None, hyper_rank=1)
    spec = model.lora_spec()
    assert spec["h_s.0.r1"]["rank"] == 1 and spec["h_a.0.r1"]["rank"] == 1
    assert spec["g_s.linear.r1"]["rank"] == 2 and spec["g_a.linear.r1"]["rank"] == 2
    assert all(v["alpha"] == v["rank"] for v in spec.values())  # α/r = 1


def test_excluded_layers_get_no_delta(base: Path) -> None:
    model = modelfile.load(base).model
    params = add_rate_delta(model, 1, rank=1, alpha=1.0, init_from=None, exclude=("g_a.linear", "g_s.linear"))
    spec = model.lora_spec()
    assert "g_a.linear.r1" not in spec and "g_s.linear.r1" not in spec
    assert "g_s.out.r1" in spec and "h_s.0.r1" in spec
    assert len(params) == 2 * len(spec)


def test_progressive_training_keeps_base_and_exports(tmp_path: Path, base: Path, noise_train_dir: Path) -> None:
    cfg = LoraConfig(base=str(base), out=str(tmp_path / "lora"), rates=[3, 2, 4], base_rate=3, rank=2,
                     steps_per_rate=3, batch=2, crop=64, threads=1, bf16=False, exclude="g_s.linear",
                     train_dir=str(noise_train_dir), kodak_dir=str(tmp_path / "none"))
    ckpt = train_lora(cfg, progress=lambda s: None)
    before = modelfile.load(base).model.state_dict()
    model, state = load_checkpoint(ckpt)
    assert state["done"] == [2, 4]  # the base rate has no delta
    assert not any("r3" in layer.lora for layer in model.lora_modules())
    assert set(state["wall_per_rate"]) == {"r2", "r4"}
    assert not model.g_s.linear.lora and model.g_s.out.lora  # excluded layers keep the base weight
    after = model.state_dict()
    for name, value in before.items():
        if "log_gain" in name or "log_inv_gain" in name or name.startswith("entropy_bottleneck._"):
            continue
        assert torch.equal(value, after[name]), f"base weight {name} changed"
    # Only the trained rates' gain rows moved.
    assert torch.equal(before["log_gain"][[0, 1, 3, 5]], after["log_gain"][[0, 1, 3, 5]])
    assert any(torch.count_nonzero(layer.lora["r2"].B) > 0 for layer in model.lora_modules())

    data = modelfile.export_bytes(model)
    codec = Codec(modelfile.load_bytes(data), hub.model_id_for_bytes(data))
    rgb = np.asarray(Image.open(next(noise_train_dir.iterdir())).convert("RGB"))
    image = LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None)
    enc = codec.encode(image, 2.0)  # rate 2 has a delta: merged at load, decoded exactly
    out = np.asarray(codec.decode(enc.data).image)
    assert out.shape == rgb.shape
    plain = Codec(modelfile.load(base), hub.model_id_for_file(base))
    assert plain.encode(image, 2.0).data[30:] != enc.data[30:]

    # The export records how the deltas were made, for the bench's training-cost table.
    path = export(ckpt, "t", tmp_path / "out", {}, package=False, default=False, description="")
    loram = modelfile.load(path).metadata["info"]["loram"]
    assert loram["rates"] == [2, 4] and loram["base_rate"] == 3 and loram["rank"] == 2
    assert loram["exclude"] == "g_s.linear" and set(loram["wall_per_rate"]) == {"r2", "r4"}
    assert "base_training" not in modelfile.load(path).metadata["info"]  # a weights file has no training record


def test_resume_continues_the_interrupted_rate(tmp_path: Path, base: Path, noise_train_dir: Path) -> None:
    common = dict(base=str(base), rates=[2, 1], base_rate=3, rank=2, batch=2, crop=64, threads=1,
                  bf16=False, train_dir=str(noise_train_dir), kodak_dir=str(tmp_path / "none"))
    straight = train_lora(LoraConfig(out=str(tmp_path / "a"), steps_per_rate=4, **common), progress=lambda s: None)
    # The same run, stopped after rate 2 and restarted with rate 1 still to do.
    train_lora(LoraConfig(out=str(tmp_path / "b"), steps_per_rate=4, **{**common, "rates": [2]}),
               progress=lambda s: None)
    resumed = train_lora(LoraConfig(out=str(tmp_path / "b"), steps_per_rate=4, **common), progress=lambda s: None)
    a = torch.load(straight, weights_only=False)["model"]
    b = torch.load(resumed, weights_only=False)["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_full_finetune_mode_trains_every_weight(tmp_path: Path, base: Path, noise_train_dir: Path) -> None:
    cfg = LoraConfig(base=str(base), out=str(tmp_path / "full"), mode="full", rates=[1], steps_per_rate=2,
                     batch=2, crop=64, threads=1, bf16=False, full_lr=1e-3, lambda_override="1:0.0011",
                     train_dir=str(noise_train_dir), kodak_dir=str(tmp_path / "none"))
    path = train_lora(cfg, progress=lambda s: None)
    assert path.name == "full-r1.pt"
    model, state = load_checkpoint(path)
    assert state["step"] == 2 and not state["lora"]
    assert model.config.lambdas[1] == 0.0011  # compared with deltas trained at the same λ
    before = modelfile.load(base).model.state_dict()
    assert not torch.equal(before["g_s.linear.weight"], model.state_dict()["g_s.linear.weight"])


def test_fractional_quality_between_delta_rates_round_trips(base: Path, noise_train_dir: Path) -> None:
    model = modelfile.load(base).model
    for rate in (1, 2):
        add_rate_delta(model, rate, rank=2, alpha=1.0, init_from=None)
        for layer in model.lora_modules():
            with torch.no_grad():
                layer.lora[f"r{rate}"].B.normal_(0, 0.02)
    data = modelfile.export_bytes(model)
    codec = Codec(modelfile.load_bytes(data), hub.model_id_for_bytes(data))
    rgb = np.asarray(Image.open(next(noise_train_dir.iterdir())).convert("RGB"))
    image = LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None)
    files = {q: codec.encode(image, q).data for q in (1.0, 1.5, 2.0)}
    assert len(set(files.values())) == 3
    again = Codec(modelfile.load_bytes(data), hub.model_id_for_bytes(data))
    for q, blob in files.items():
        assert np.array_equal(np.asarray(again.decode(blob).image), np.asarray(codec.decode(blob).image))


def test_lambda_override_retrains_a_rate_and_is_stored(tmp_path: Path, base: Path, noise_train_dir: Path) -> None:
    common = dict(base_rate=3, rank=2, batch=2, crop=64, threads=1, bf16=False, steps_per_rate=2,
                  train_dir=str(noise_train_dir), kodak_dir=str(tmp_path / "none"))
    first = train_lora(LoraConfig(base=str(base), out=str(tmp_path / "a"), rates=[2], **common),
                       progress=lambda s: None)
    again = train_lora(LoraConfig(base=str(first), out=str(tmp_path / "b"), rates=[2], lambda_override="2:0.001",
                                  **common), progress=lambda s: None)
    model, state = load_checkpoint(again)
    assert model.config.lambdas[2] == 0.001 and state["model_config"]["lambdas"][2] == 0.001
    before, _ = load_checkpoint(first)
    assert not torch.equal(before.g_s.linear.lora["r2"].B, model.g_s.linear.lora["r2"].B)  # trained further
    data = modelfile.export_bytes(model)
    assert modelfile.load_bytes(data).model.config.lambdas[2] == 0.001


def test_base_training_is_read_from_a_base_checkpoint(tmp_path: Path, base: Path) -> None:
    ckpt = tmp_path / "base.pt"
    torch.save({"step": 1234, "wall": 56.5, "train_config": {"N": 8}}, ckpt)
    assert base_training(str(ckpt)) == {"steps": 1234, "wall_seconds": 56.5, "train_config": {"N": 8}}
    assert base_training(str(base)) == {}  # weights, not a training checkpoint
    assert base_training(str(tmp_path / "gone.pt")) == {}


def test_a_loram_file_warm_starts_a_new_base(tmp_path: Path, base: Path) -> None:
    """--init-from a packaged LoRAM file takes its base and drops the per-rate deltas,
    even though the LoRA stage overrode the end rates' λ."""
    from dataclasses import replace

    from udic.train.loop import load_initial_weights

    model = modelfile.load(base).model
    add_rate_delta(model, 2, rank=1, alpha=1.0, init_from=None)
    for layer in model.lora_modules():
        layer.lora["r2"].B.data.normal_()
    model.config = replace(model.config, lambdas=(0.0002,) + model.config.lambdas[1:])
    loram = tmp_path / "loram.safetensors"
    loram.write_bytes(modelfile.export_bytes(model))

    fresh = UdicModel(ModelConfig(N=8, M=12))
    load_initial_weights(fresh, loram)
    assert not list(fresh.lora_modules()) or all(not layer.lora for layer in fresh.lora_modules())
    want = modelfile.load(base).model.state_dict()
    got = fresh.state_dict()
    assert torch.equal(got["g_s.out.weight"], want["g_s.out.weight"].half().float())


def test_a_rate_above_the_top_is_appended_trained_from_its_neighbour_and_resumed(
        tmp_path: Path, base: Path, noise_train_dir: Path) -> None:
    top = modelfile.load(base).model.config.num_rates  # 6: rates 0 … 5
    common = dict(base=str(base), base_rate=3, rank=2, batch=2, crop=64, threads=1, bf16=False, steps_per_rate=3,
                  lambda_override=f"{top}:0.2", train_dir=str(noise_train_dir), kodak_dir=str(tmp_path / "none"))
    ckpt = train_lora(LoraConfig(out=str(tmp_path / "a"), rates=[4, 5, top], **common), progress=lambda s: None)
    model, state = load_checkpoint(ckpt)
    assert model.config.num_rates == top + 1 and model.config.lambdas[top] == 0.2
    assert state["done"] == [4, 5, top] and model.log_gain.shape[0] == top + 1
    before = modelfile.load(base).model
    assert torch.equal(before.log_gain[:4], model.log_gain[:4])  # rates not trained keep their gains
    # The new top rate's gains start above the rate below's (a finer quantiser).
    assert bool((model.log_gain[top] > model.log_gain[top - 1] - 0.5).all())
    # Stopped after rate 5 and restarted: the same weights as the straight run.
    train_lora(LoraConfig(out=str(tmp_path / "b"), rates=[4, 5], **{**common, "lambda_override": ""}),
               progress=lambda s: None)
    resumed = train_lora(LoraConfig(out=str(tmp_path / "b"), rates=[4, 5, top], **common), progress=lambda s: None)
    a, b = torch.load(ckpt, weights_only=False)["model"], torch.load(resumed, weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Exported and loaded as a codec: the new top rate encodes and decodes.
    data = modelfile.export_bytes(model)
    codec = Codec(modelfile.load_bytes(data), hub.model_id_for_bytes(data))
    assert codec.max_quality == top
    rgb = np.asarray(Image.open(next(noise_train_dir.iterdir())).convert("RGB"))
    image = LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None)
    for q in (float(top), top - 0.5):
        enc = codec.encode(image, q)
        assert np.asarray(codec.decode(enc.data).image).shape == rgb.shape


def test_rates_above_the_top_must_follow_it() -> None:
    from udic.train.lora import extend_rates

    model = UdicModel(ModelConfig(N=8, M=12))
    with pytest.raises(ValueError, match="without gaps"):
        extend_rates(model, {7: 0.3})
    assert extend_rates(model, {}) == 0 and model.config.num_rates == 6


def test_a_file_with_an_appended_rate_warm_starts_the_recipes_rates(tmp_path: Path, base: Path) -> None:
    """A 7-rate file (a rate appended above the top) warm-starts a 6-rate recipe:
    its first six gain rows, untouched."""
    from udic.train.loop import load_initial_weights

    model = modelfile.load(base).model
    rates = model.log_gain.shape[0]
    with torch.no_grad():
        model.log_gain.copy_(torch.randn_like(model.log_gain))
    extend_rates(model, {rates: 0.5})
    assert model.log_gain.shape[0] == rates + 1
    appended = tmp_path / "appended.safetensors"
    appended.write_bytes(modelfile.export_bytes(model))

    fresh = UdicModel(ModelConfig(N=8, M=12))
    load_initial_weights(fresh, appended)
    want = modelfile.load(appended).model.log_gain[:rates]
    assert torch.equal(fresh.log_gain.detach(), want.detach())
