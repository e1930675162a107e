"""Shared fixtures: a TINY udic model (never the real weights) and small test images.

The tiny model (``udic.testing.build_tiny_model``: a DCT block transform, random
residual last layers, a LoRA delta for rate 2 on a few convs including one in the
hyper-synthesis) is built once per session with a fixed seed and exported as
``tiny-<id>.safetensors``, the name the hub accepts for user-dropped cache files.
``tiny_cache`` points ``UDIC_CACHE_DIR`` at it, so ``udic.hub.resolve(<id>)`` — and
hence ``udic decode`` — finds it by the id recorded in a file header.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

from udic import api
from udic.cli import main
from udic.codec import Codec, codec_for_file
from udic.imageio import LoadedImage, load_image
from udic.testing import build_tiny_model, dct_basis, export_tiny_model  # noqa: F401  (used by other tests)

# Tiny models on a 2-core machine: one torch thread avoids thread-sync stalls whenever
# anything else runs (tests that are about thread counts set them explicitly).
torch.set_num_threads(1)


def smooth_image(h: int = 40, w: int = 56, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth gradient plus mild noise, uint8 (h, w, channels) or (h, w) if channels == 1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = [
        40 + 160 * xx / max(w - 1, 1),
        40 + 160 * yy / max(h - 1, 1),
        128 + 60 * np.sin((xx + yy) / 9.0),
    ]
    planes = [base[c % 3] + rng.normal(0, 6, (h, w)) for c in range(channels)]
    arr = np.clip(np.rint(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8)
    return arr[..., 0] if channels == 1 else arr


def png_bytes(image: Image.Image | np.ndarray, **save_kwargs) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save_kwargs)
    return buf.getvalue()


def flat_art(h: int = 48, w: int = 64) -> np.ndarray:
    """Few colours in large flat areas: what the learned codec codes worst."""
    img = np.full((h, w, 3), 250, np.uint8)
    img[8:30, 10:40] = (200, 30, 40)
    img[20:44, 30:60] = (20, 90, 200)
    img[::7, :] = 0
    return img


def loaded(arr_or_image: Image.Image | np.ndarray) -> LoadedImage:
    return load_image(png_bytes(arr_or_image))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@dataclass(frozen=True)
class TinyModel:
    dir: Path
    path: Path
    id: str


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    directory = tmp_path_factory.mktemp("tiny-cache")
    path, model_id = export_tiny_model(directory, seed=0, name="tiny")
    return TinyModel(dir=directory, path=path, id=model_id)


@pytest.fixture(scope="session")
def tiny_codec(tiny_model: TinyModel) -> Codec:
    return codec_for_file(tiny_model.path)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A second tiny model (different seed), kept OUT of the cache dir."""
    directory = tmp_path_factory.mktemp("other-model")
    path, model_id = export_tiny_model(directory, seed=1, name="other")
    return TinyModel(dir=directory, path=path, id=model_id)


@pytest.fixture
def tiny_cache(tiny_model: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TinyModel]:
    """Env in which the hub finds the tiny model by id, and nothing from the real user setup."""
    monkeypatch.setenv("UDIC_CACHE_DIR", str(tiny_model.dir))
    monkeypatch.delenv("UDIC_CONFIG", raising=False)
    monkeypatch.delenv("UDIC_MODEL_URLS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    api._codecs.clear()
    yield tiny_model
    api._codecs.clear()


@pytest.fixture
def tiny_env(tiny_model: TinyModel, tmp_path: Path) -> dict[str, str]:
    """Environment for subprocesses that must find the tiny model."""
    env = {k: v for k, v in os.environ.items() if k not in ("UDIC_CONFIG", "UDIC_MODEL_URLS")}
    env["UDIC_CACHE_DIR"] = str(tiny_model.dir)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")
    env["PYTHONWARNINGS"] = "ignore"
    return env


# ---- CLI helpers shared by the CLI, batch, odd-input and fuzz tests ----------------------------

UDIC = Path(sys.executable).with_name("udic")  # the console script of this environment


@pytest.fixture
def runner(tiny_cache: TinyModel) -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str, input: bytes | None = None) -> Result:
    result = runner.invoke(main, list(args), input=input, catch_exceptions=True)
    # Anything but a clean exit is a bug: errors must become messages, never exceptions.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture()
def noise_train_dir(tmp_path: Path) -> Path:
    """A training folder of 3 noise images (72×72): thousands of colours each, as photos."""
    d = tmp_path / "train"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        img = rng.integers(0, 256, (72, 72, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / f"t{i}.png")
    return d
