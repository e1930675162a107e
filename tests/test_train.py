"""Training loop: runs, checkpoints, resumes exactly, logs, exports a loadable model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udic import hub, modelfile
from udic.codec import Codec
from udic.imageio import LoadedImage
from udic.train.data import CropDataset
from udic.train.export import load_checkpoint
from udic.train.loop import TrainConfig, train, trim_log


@pytest.fixture()
def train_dir(tmp_path: Path) -> Path:
    d = tmp_path / "train"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        yy, xx = np.mgrid[0:80, 0:96]
        img = np.stack([(xx * 2 + i * 20) % 256, (yy * 3) % 256, (xx + yy) % 256], -1).astype(np.float64)
        img += rng.normal(0, 8, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"img{i}.webp", lossless=True)
    return d


def _config(tmp_path: Path, train_dir: Path, steps: int) -> TrainConfig:
    return TrainConfig(
        out=str(tmp_path / "run"), steps=steps, batch=2, crop=64, big_crop=64, lr=1e-3, warmup=2,
        threads=1, bf16=False, eval_every=10_000, ckpt_minutes=1e9, train_dir=str(train_dir),
        kodak_dir=str(tmp_path / "no-kodak"), pca_patches=64, N=8, M=12,
    )


def test_batches_are_a_function_of_seed_and_step(train_dir: Path) -> None:
    data = CropDataset(train_dir)
    a = data.batch(seed=3, step=7, batch_size=2, crop=32)
    b = data.batch(seed=3, step=7, batch_size=2, crop=32)
    c = data.batch(seed=3, step=8, batch_size=2, crop=32)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (2, 3, 32, 32)


def test_resume_continues_exactly(tmp_path: Path, train_dir: Path) -> None:
    torch.manual_seed(0)
    # Straight run of 4 steps …
    straight = tmp_path / "straight"
    straight.mkdir()
    cfg = _config(straight, train_dir, 4)
    train(cfg, progress=lambda s: None)
    full = torch.load(Path(cfg.out) / "last.pt", weights_only=False)
    # … against 2 steps, stop, then resume to 4.
    split = tmp_path / "split"
    split.mkdir()
    cfg2 = _config(split, train_dir, 2)
    train(cfg2, progress=lambda s: None)
    cfg2.steps = 4
    train(cfg2, progress=lambda s: None)
    resumed = torch.load(Path(cfg2.out) / "last.pt", weights_only=False)
    assert resumed["step"] == full["step"] == 4
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_log_and_export(tmp_path: Path, train_dir: Path) -> None:
    cfg = _config(tmp_path, train_dir, 50)
    ckpt = train(cfg, progress=lambda s: None)
    rows = list(csv.DictReader(open(Path(cfg.out) / "train_log.csv")))
    assert rows and rows[-1]["step"] == "50"
    assert float(rows[-1]["bpp"]) > 0
    model, state = load_checkpoint(ckpt)
    data = modelfile.export_bytes(model, info={"steps": state["step"]})
    assert modelfile.export_bytes(model, info={"steps": state["step"]}) == data  # reproducible bytes
    weights = modelfile.load_bytes(data)
    codec = Codec(weights, hub.model_id_for_bytes(data))
    rgb = np.asarray(Image.open(next(train_dir.iterdir())).convert("RGB"))
    enc = codec.encode(LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None), 1.0)
    out = np.asarray(codec.decode(enc.data).image)
    assert out.shape == rgb.shape
    assert weights.metadata["info"]["steps"] == 50


def test_lr_schedule_warm_restart_ends_decayed() -> None:
    """A continued run (cycle_from) warms up again, holds, and ends at lr_final like a fresh one."""
    fresh = TrainConfig(steps=1000, lr=3e-4, lr_final=3e-5, warmup=100, decay_from=0.6)
    assert fresh.lr_at(0) == pytest.approx(3e-6)
    assert fresh.lr_at(599) == pytest.approx(3e-4)
    assert fresh.lr_at(1000) == pytest.approx(3e-5)
    cont = TrainConfig(steps=3000, lr=3e-4, lr_final=3e-5, warmup=100, decay_from=0.6, cycle_from=1000)
    assert cont.lr_at(1000) == pytest.approx(3e-6)  # warm-up restarts from the cycle's first step
    assert cont.lr_at(1099) == pytest.approx(3e-4)
    assert cont.lr_at(2199) == pytest.approx(3e-4)  # plateau: 60 % of the cycle's 2000 steps
    assert 3e-5 < cont.lr_at(2600) < 3e-4
    assert cont.lr_at(3000) == pytest.approx(3e-5)


def test_resume_drops_rows_logged_after_the_checkpoint(tmp_path: Path, train_dir: Path) -> None:
    """A killed run logged steps its checkpoint never saw; the resumed run logs them again."""
    cfg = _config(tmp_path, train_dir, 2)
    train(cfg, progress=lambda s: None)
    log = Path(cfg.out) / "train_log.csv"
    before = log.read_text()
    with open(log, "a") as f:
        f.write("3,9.9,1.0,0.5,20.0,1e-4,64,0.1\n")  # as if the run died after step 3, checkpoint at 2
    cfg.steps = 2
    train(cfg, progress=lambda s: None)
    assert log.read_text() == before


def test_trim_log_keeps_header_and_earlier_steps(tmp_path: Path) -> None:
    path = tmp_path / "eval_log.csv"
    path.write_text("step,wall_s\n0,0.0\n1000,60.0\n2000,120.0\n1000,61.0\n")
    trim_log(path, 1000)
    assert path.read_text() == "step,wall_s\n0,0.0\n1000,60.0\n1000,61.0\n"
    trim_log(tmp_path / "missing.csv", 5)  # nothing to trim: no error


def test_trim_log_drops_garbled_and_cut_off_lines(tmp_path: Path) -> None:
    path = tmp_path / "train_log.csv"
    path.write_text("step,wall_s\n50,1.0\n\nxx,2\n100,2.0\n105")  # "105" was cut mid-write
    trim_log(path, 1000)
    assert path.read_text() == "step,wall_s\n50,1.0\n100,2.0\n"
    path.write_text("50,1.0\n")  # no header: killed before the first flush
    trim_log(path, 1000)
    assert path.read_text() == ""


def test_a_run_without_checkpoint_starts_its_logs_over(tmp_path: Path, train_dir: Path) -> None:
    cfg = _config(tmp_path, train_dir, 2)
    out = Path(cfg.out)
    out.mkdir(parents=True)
    (out / "train_log.csv").write_text("step,wall_s,loss,bpp,psnr,lr,crop,sec_per_step\n7,1,1,1,1,1,64,1\n")
    train(cfg, progress=lambda s: None)
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert all(r["step"] != "7" for r in rows)


def test_a_context_model_warm_starts_from_a_hyperprior_run(tmp_path: Path, train_dir: Path) -> None:
    """--latent-codec channel-context --init-from <hyperprior checkpoint>: the transforms are
    the hyperprior's, the context nets start at zero and train (at --context-lr-scale × the LR),
    and the export codes through the channel codec."""
    hyper_dir = tmp_path / "hyper"
    hyper_dir.mkdir()
    hyper_ckpt = train(_config(hyper_dir, train_dir, 3), progress=lambda s: None)
    ctx_dir = tmp_path / "ctx"
    ctx_dir.mkdir()
    cfg = _config(ctx_dir, train_dir, 4)
    cfg.latent_codec, cfg.init_from, cfg.context_lr_scale = "channel-context", str(hyper_ckpt), 3.0
    ckpt = train(cfg, progress=lambda s: None)
    model, state = load_checkpoint(ckpt)
    assert model.config.latent_codec == "channel-context"
    hyper = torch.load(hyper_ckpt, weights_only=False)["model"]
    trained = state["model"]
    assert any(not torch.equal(trained[k], hyper[k]) for k in hyper if k.startswith("g_s."))
    assert any(v.abs().sum() > 0 for k, v in trained.items() if k.startswith("context.") and k.endswith("4.weight"))
    data = modelfile.export_bytes(model, info={"steps": state["step"]})
    codec = Codec(modelfile.load_bytes(data), hub.model_id_for_bytes(data))
    assert codec.latent_codec.name == "channel-context"
    rgb = np.asarray(Image.open(next(train_dir.iterdir())).convert("RGB"))
    enc = codec.encode(LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None), 1.0)
    assert np.asarray(codec.decode(enc.data).image).shape == rgb.shape
    with pytest.raises(ValueError, match="latent_codec"):
        TrainConfig(latent_codec="autoregressive").check()
