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
