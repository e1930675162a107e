"""Recipe files (``--config``), the resolved recipe saved with a run, and the time-scaled
schedule that ``make train-gpu`` uses, run on CPU with the tiny recipe."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udic import modelfile
from udic.train.__main__ import main as train_main
from udic.train.__main__ import parse_args
from udic.train.loop import TrainConfig
from udic.train.options import read_recipe, recipe_toml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


@pytest.fixture()
def train_dir(tmp_path: Path) -> Path:
    d = tmp_path / "train"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        yy, xx = np.mgrid[0:72, 0:80]
        img = np.stack([(xx * 2 + i * 20) % 256, (yy * 3) % 256, (xx + yy) % 256], -1).astype(np.float64)
        Image.fromarray(np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)).save(d / f"{i}.png")
    return d


def test_flags_override_the_recipe_file(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('N = 16\nM = 24\nsteps = 300\nlr = 2e-4\nbf16 = false\nrates = [1, 3]\n'
                      'lambdas = [0.001, 0.01, 0.1]\n')
    cfg = parse_args(["--config", str(recipe), "--steps", "7", "--out", "x"])
    assert (cfg.N, cfg.M, cfg.steps, cfg.lr, cfg.bf16, cfg.rates, cfg.out) == (16, 24, 7, 2e-4, False, [1, 3], "x")
    assert cfg.rate_lambdas() == (0.001, 0.01, 0.1)
    assert cfg.batch == TrainConfig().batch  # neither in the file nor on the command line: the default


def test_base_narrow_recipe_is_the_make_train_recipe() -> None:
    cfg = parse_args(["--config", str(RECIPES / "base-narrow.toml")])
    legacy = parse_args("--N 64 --M 128 --steps 22000 --big-crop-from 1.0 "
                        "--lambdas 0.00035,0.00094,0.00251,0.00673,0.018,0.0483".split())
    assert cfg == legacy


@pytest.mark.parametrize("text, message", [
    ("stepz = 3\n", "unknown recipe key 'stepz'"),
    ("steps = 2.5\n", "steps = 2.5: expected int"),
    ("bf16 = 1\n", "bf16 = 1: expected bool"),
    ("steps = [\n", "not a valid TOML recipe"),
])
def test_a_bad_recipe_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                         message: str) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    with pytest.raises(SystemExit) as exc:
        parse_args(["--config", str(recipe)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert str(recipe) in err and message in err and "Traceback" not in err


def test_a_missing_recipe_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--config", str(tmp_path / "none.toml")])
    assert "cannot read the recipe" in capsys.readouterr().err


def test_recipe_text_reads_back_to_the_same_config(tmp_path: Path) -> None:
    cfg = TrainConfig(out='runs/"odd" \\ name', lr=1e-5, rates=[0, 2], lambdas="0.001,0.02", bf16=False)
    path = tmp_path / "recipe.toml"
    path.write_text(recipe_toml(cfg, "a header\nof two lines"))
    assert TrainConfig(**read_recipe(TrainConfig, path)) == cfg


def test_time_schedule_follows_the_time_budget() -> None:
    cfg = TrainConfig(lr=4e-4, lr_final=2e-4, warmup=10, decay_from=0.5, big_crop_from=0.9, crop=64, big_crop=128,
                      schedule="time", time_limit_minutes=1.0)
    assert cfg.lr_at(0, 0.9) == pytest.approx(4e-5)  # the warm-up stays in steps
    assert cfg.lr_at(1000, 0.49) == 4e-4
    assert cfg.lr_at(1000, 0.75) == pytest.approx(3e-4)  # halfway through the cosine
    assert cfg.lr_at(1000, 1.0) == pytest.approx(2e-4)
    assert (cfg.crop_at(10**9, 0.89), cfg.crop_at(0, 0.9)) == (64, 128)
    with pytest.raises(ValueError, match="time-limit"):
        TrainConfig(schedule="time").check()
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="epochs").check()


def test_a_run_saves_its_resolved_recipe(tmp_path: Path, train_dir: Path) -> None:
    out = tmp_path / "run"
    args = ["--config", str(RECIPES / "tiny.toml"), "--steps", "3", "--out", str(out), "--train-dir", str(train_dir),
            "--kodak-dir", str(tmp_path / "no-kodak")]
    assert train_main(args) == 0
    state = torch.load(out / "last.pt", weights_only=False)
    assert (out / "recipe.toml").read_text() == state["recipe"]
    again = parse_args(["--config", str(out / "recipe.toml")])
    assert dataclasses.asdict(again) == state["train_config"]
    assert (again.steps, again.N, again.out) == (3, 8, str(out))


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_train_gpu_trains_for_its_minutes_and_exports(tmp_path: Path, train_dir: Path) -> None:
    """``make train-gpu``'s own commands, on CPU with the tiny recipe and a 4-second budget:
    the run stops on time with its learning rate decayed, and the export loads."""
    out = tmp_path / "gpu"
    make = subprocess.run(
        ["make", "-s", "-n", "-o", ".venv/.installed", "train-gpu", f"PY={sys.executable}",
         "RECIPE=recipes/tiny.toml", "GPU_DEVICE=cpu", "MINUTES=0.067", f"GPU_OUT={out}",
         f"GPU_ARGS=--train-dir {train_dir} --kodak-dir {tmp_path / 'no-kodak'} --warmup 1"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    assert "--schedule time" in make.stdout and "udic.train.export" in make.stdout
    subprocess.run(["bash", "-e", "-c", make.stdout], cwd=ROOT, check=True, capture_output=True)
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] > 1 and state["wall"] >= 4.0
    assert state["train_config"]["device"] == "cpu"
    last_lr = state["opt"]["param_groups"][0]["lr"]
    cfg = TrainConfig(**state["train_config"])
    assert last_lr < (cfg.lr + cfg.lr_final) / 2  # past the middle of the decay when time ran out
    exported = list(out.glob("udic-hp-gpu-base-*.safetensors"))
    assert len(exported) == 1
    assert modelfile.load(exported[0]).model.config.N == 8
