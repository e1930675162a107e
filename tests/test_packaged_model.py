"""The packaged default model: present, hash-verified, and a working codec.

These are the only tests that use the real weights; they work on small crops so
they stay fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from udic import api, hub
from udic.imageio import load_image
from udic.metrics import psnr_rgb
from udic.train.data import default_data_root

KODIM23 = default_data_root() / "kodak" / "kodim23.png"


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    if not KODIM23.exists():
        pytest.skip(f"shared data not found at {KODIM23}")
    return load_image(KODIM23).rgb[128:256, 256:448].copy()


def test_registry_default_is_packaged_and_verifies() -> None:
    default, entries = hub.load_registry()
    assert default is not None, "no default model in the packaged registry"
    resolved = hub.resolve(None, progress=False, allow_download=False)
    assert resolved.source == "packaged"
    assert resolved.entry.id == default
    assert hub.verify_file(resolved.path, resolved.entry.sha256)
    assert hub.model_id_for_file(resolved.path) == default


def test_quality_orders_rate_and_distortion(crop: np.ndarray) -> None:
    codec = api.get_codec(None, progress=False)
    results = []
    for q in (0.0, codec.max_quality):
        enc = codec.encode(api.as_loaded(crop), q)
        out = np.asarray(codec.decode(enc.data).image)
        assert out.shape == crop.shape
        results.append((enc.bpp, psnr_rgb(crop, out)))
    (bpp_lo, psnr_lo), (bpp_hi, psnr_hi) = results
    assert bpp_hi > bpp_lo
    assert psnr_hi > psnr_lo + 2.0


def test_decode_is_identical_in_another_process_with_other_threads(tmp_path: Path, crop: np.ndarray) -> None:
    import torch

    torch.set_num_threads(2)
    codec = api.get_codec(None, progress=False)
    enc = codec.encode(api.as_loaded(crop), 2.5)
    here = np.asarray(codec.decode(enc.data).image)
    src = tmp_path / "c.udic"
    src.write_bytes(enc.data)
    script = (
        "import sys, json, hashlib, numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "from udic import api\n"
        "r = api.decode(open(sys.argv[1], 'rb').read(), progress=False)\n"
        "print(json.dumps({'md5': hashlib.md5(np.asarray(r.image).tobytes()).hexdigest()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    import hashlib

    assert json.loads(out.stdout.strip().splitlines()[-1])["md5"] == hashlib.md5(here.tobytes()).hexdigest()


KODIM04 = default_data_root() / "kodak" / "kodim04.png"


def test_the_high_fidelity_model_is_packaged_and_answers_a_photo_above_the_default(tmp_path: Path) -> None:
    """kodim04's face, 192x192: -q 7 (near-lossless ±4, 11.1 KB at 40.7 dB) gives way to the
    high-fidelity model's file (5.7 KB at 40.8 dB); a --target-psnr 40 above the default's top too;
    naming the default model keeps the old answers."""
    from PIL import Image

    from udic import container as ctr
    from udic.modelchoice import HIGH_FIDELITY_MODEL
    from udic.ratecontrol import RateTarget

    if not KODIM04.exists():
        pytest.skip(f"shared data not found at {KODIM04}")
    resolved = hub.resolve(HIGH_FIDELITY_MODEL, progress=False, allow_download=False)
    assert resolved.source == "packaged" and hub.verify_file(resolved.path, resolved.entry.sha256)
    src = tmp_path / "face.png"
    Image.fromarray(load_image(KODIM04).rgb[200:392, 100:292]).save(src)
    out = tmp_path / "face.udic"
    run = subprocess.run([sys.executable, "-m", "udic", "encode", str(src), "-q", "7", "-o", str(out), "--json"],
                         capture_output=True, text=True, check=True)
    header = ctr.parse(out.read_bytes()).header
    assert header.model_id == HIGH_FIDELITY_MODEL and header.mode != "pixels"
    assert "high-fidelity model" in run.stderr
    ref = load_image(src).rgb
    pixels = api.encode_pixels(api.as_loaded(ref), 4, 1)
    assert out.stat().st_size < len(pixels.data)
    assert psnr_rgb(ref, np.asarray(api.decode(out.read_bytes(), progress=False).image)) >= pixels.psnr
    default = hub.resolve(None, progress=False, allow_download=False).entry.id
    named = api.encode_image(src, 7.0, model=default, progress=False)
    assert named.data == pixels.data
    target = api.encode_image(src, model=None, target=RateTarget("psnr", 40.0), progress=False)
    assert ctr.parse(target.data).header.model_id == HIGH_FIDELITY_MODEL
    # -q 6.5: a file between -q 6 and -q 7 (the CLI loads the default model for the top rate's PSNR)
    half = tmp_path / "half.udic"
    run = subprocess.run([sys.executable, "-m", "udic", "encode", str(src), "-q", "6.5", "-o", str(half)],
                         capture_output=True, text=True, check=True)
    assert ctr.parse(half.read_bytes()).header.model_id == HIGH_FIDELITY_MODEL
    assert "of the way from the top rate" in run.stderr
    assert half.stat().st_size < out.stat().st_size
    q6 = api.encode_image(src, 6.0, progress=False)
    half_db = psnr_rgb(ref, np.asarray(api.decode(half.read_bytes(), progress=False).image))
    assert psnr_rgb(ref, np.asarray(api.decode(q6.data, progress=False).image)) < half_db < pixels.psnr
