"""Training under torchrun with DistributedDataParallel (gloo on CPU): 2 local ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from udic.train.data import CropDataset
from udic.train.loop import stream_seed

ROOT = Path(__file__).resolve().parents[1]


def test_each_rank_draws_its_own_batches_and_rank_0_the_single_process_ones(noise_train_dir: Path) -> None:
    data = CropDataset(noise_train_dir)
    single = data.batch(seed=2, step=5, batch_size=2, crop=32)
    assert torch.equal(data.batch(2, 5, 2, 32, stream=0), single)
    assert not torch.equal(data.batch(2, 5, 2, 32, stream=1), single)
    assert stream_seed(123, 0) == 123 and stream_seed(123, 1) != stream_seed(123, 2)


def test_torchrun_ranks_hold_identical_weights(tmp_path: Path, noise_train_dir: Path) -> None:
    train_dir = noise_train_dir
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "udic.train", "--config", str(ROOT / "recipes" / "tiny.toml"), "--steps", "3",
           "--out", str(out), "--train-dir", str(train_dir), "--kodak-dir", str(tmp_path / "no-kodak")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["world_size"] == 2
    assert len(set(ranks["state_sha256"])) == 1  # the ranks saw different batches, yet hold one model
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 3 and state["world_size"] == 2
    assert proc.stdout.count("loading training images") == 1  # rank 0 alone reports
