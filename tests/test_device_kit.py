"""tools.device_kit and tools/device_train.sh: the accelerator run, rehearsed on CPU with the
tiny recipe, and what must hold for its files to come back (parts under 16 MiB, a checksum)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tools import device_kit

ROOT = Path(__file__).resolve().parents[1]


def _images(folder: Path, count: int, size: int = 64) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.webp", lossless=True)


def test_pack_keeps_to_its_budget_and_its_exact_share(tmp_path: Path) -> None:
    src = tmp_path / "train"
    _images(src, 12)
    one = (src / "img00.webp").stat().st_size
    budget_mib = 6.5 * one / 2**20  # room for about six exact images, or more as JPEG
    summary = device_kit.pack_training_images(src, tmp_path / "pack", budget_mib, lossless_share=0.34)
    written = list((tmp_path / "pack").iterdir())
    assert sum(p.stat().st_size for p in written) <= budget_mib * 2**20
    assert summary["images"]["lossless"] == sum(p.name.endswith(".webp.webp") for p in written) >= 1
    assert summary["images"]["jpeg"] == sum(p.suffix == ".jpg" for p in written) >= 1
    assert sum(summary["images"].values()) == 12
    exact = next(p for p in written if p.name.endswith(".webp.webp"))
    assert exact.read_bytes() == (src / exact.stem).read_bytes()  # exact images are the originals


def test_split_and_join_round_trip_and_refuse_a_broken_part(tmp_path: Path) -> None:
    ckpt = tmp_path / "run" / "last.pt"
    ckpt.parent.mkdir()
    model = {"w": torch.arange(300_000, dtype=torch.float32)}  # 1.2 MB
    torch.save({"model": model, "opt": {"big": torch.zeros(600_000)}, "step": 7, "wall": 60.0,
                "model_config": {"N": 8}}, ckpt)
    out = tmp_path / "out"
    parts = device_kit.split_checkpoint(ckpt, out, part_mib=0.5)
    assert len(parts) == 3 and all(p.stat().st_size <= 0.5 * 2**20 for p in parts)
    joined = tmp_path / "joined.pt"
    manifest = device_kit.join_checkpoint(out, joined)
    assert manifest["step"] == 7
    state = torch.load(joined, weights_only=False)
    assert "opt" not in state and torch.equal(state["model"]["w"], model["w"])
    data = bytearray(parts[1].read_bytes())
    data[10] ^= 1
    parts[1].write_bytes(bytes(data))
    with pytest.raises(SystemExit, match="sha256"):
        device_kit.join_checkpoint(out, tmp_path / "broken.pt")
    assert not (tmp_path / "broken.pt").exists()


def _rehearsal(tmp_path: Path, **extra: str) -> tuple[Path, dict[str, str]]:
    """A pack of 3 images, an empty $OUT and the environment that runs tools/device_train.sh on
    the CPU with the tiny recipe; returns ($OUT, env)."""
    pack = tmp_path / "pack"
    _images(pack / "train", 3)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, RECIPE="recipes/tiny.toml",
               RUN=str(tmp_path / "run"), DEVICE="cpu", PACK=str(pack), **extra)
    return out, env


def test_device_train_script_trains_and_sends_the_model_back(tmp_path: Path) -> None:
    """The machine's command, on CPU with the tiny recipe and a 3-second budget: the model
    comes back in parts that join into a checkpoint the exporter and --init-from read."""
    out, env = _rehearsal(tmp_path)
    done = subprocess.run(["bash", "tools/device_train.sh", "0.05", "--warmup", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert "train.log" in names and "train_log.csv" in names and "run.parts.json" in names
    assert len(names) <= 8  # at most 8 files come back
    joined = tmp_path / "joined.pt"
    manifest = device_kit.join_checkpoint(out, joined)
    assert manifest["step"] >= 1
    from udic.train.export import load_checkpoint

    model, state = load_checkpoint(joined)
    assert model.config.N == 8 and state["train_config"]["device"] == "cpu"


def test_a_run_stopped_by_its_timeout_still_sends_its_last_checkpoint(tmp_path: Path) -> None:
    """Training that outlives TRAIN_TIMEOUT is killed, and the checkpoint it saved comes back
    (the device tool would otherwise kill the whole command and return nothing).  The timeout
    leaves room for torch's import and the first steps on a loaded machine: at 9 s a run beside
    training never reached its first checkpoint."""
    out, env = _rehearsal(tmp_path, TRAIN_TIMEOUT="0.4")
    done = subprocess.run(["bash", "tools/device_train.sh", "5", "--warmup", "1", "--ckpt-minutes", "0.01",
                           "--steps", "100000000"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 124, done.stderr[-2000:]  # timeout's status: the caller sees it failed
    assert device_kit.join_checkpoint(out, tmp_path / "joined.pt")["step"] >= 1


def test_device_train_script_refuses_without_a_pack(tmp_path: Path) -> None:
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, PACK=str(tmp_path / "none"))
    done = subprocess.run(["bash", "tools/device_train.sh", "1"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "device_kit pack" in done.stderr


def test_the_gpu_recipe_fits_what_comes_back() -> None:
    """recipes/base-gpu.toml's model: its fp16 weights file must come back as one file (16 MiB)
    and its fp32 model in at most MAX_PARTS parts."""
    from udic.models import ModelConfig, UdicModel
    from udic.train.loop import TrainConfig
    from udic.train.options import read_recipe

    fields = read_recipe(TrainConfig, ROOT / "recipes" / "base-gpu.toml")
    cfg = TrainConfig(**fields)
    model = UdicModel(ModelConfig(N=cfg.N, M=cfg.M, lambdas=cfg.rate_lambdas(), hyper_width=cfg.hyper_width,
                                  hyper_mid=cfg.hyper_mid))
    params = sum(p.numel() for p in model.parameters())
    assert params * 2 < 16 * 2**20
    assert params * 4 <= device_kit.MAX_PARTS * device_kit.PART_MIB * 2**20
    assert device_kit.FILES_BACK <= 8
    assert cfg.device == "cuda" and cfg.bf16 and cfg.schedule == "time"
    assert len(cfg.rate_lambdas()) == 8 and max(cfg.rate_lambdas()) == 0.35  # up to ~42 dB


def test_a_killed_run_has_already_sent_its_checkpoint(tmp_path: Path) -> None:
    """The device tool kills the whole command at its limit, and a killed shell runs no exit
    trap: each checkpoint is copied to $OUT as it lands, so the last one is there anyway."""
    import signal
    import time

    out, env = _rehearsal(tmp_path, TRAIN_TIMEOUT="5")
    proc = subprocess.Popen(["bash", "tools/device_train.sh", "4", "--warmup", "1", "--ckpt-minutes", "0.01",
                             "--steps", "100000000"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("*.parts.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint came back"
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert device_kit.join_checkpoint(out, tmp_path / "joined.pt")["step"] >= 1


def test_minutes_that_do_not_fit_the_deadline_are_refused(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    _images(pack / "train", 1)
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, PACK=str(pack), DEADLINE_S="300")
    done = subprocess.run(["bash", "tools/device_train.sh", "9"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "does not fit" in done.stderr
