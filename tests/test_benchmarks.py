"""Helpers of the benchmark sections, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tools.benchmarks.family import rate_saving
from tools.benchmarks.huge import BAND, INTERIOR, seam_psnr


def test_seam_psnr_sees_errors_at_tile_borders_only() -> None:
    ref = np.zeros((256, 256, 3), dtype=np.uint8)
    out = ref.copy()
    out[:, 128 - 2:128 + 2] = 10  # a seam along the vertical tile border at x = 128
    out[0:1, 0:1] = 1  # and one tiny error far inside a tile
    r = seam_psnr(ref, out, 128)
    band_pixels = 256 * 2 * BAND + 256 * 2 * BAND - (2 * BAND) ** 2
    assert r["band_pixels"] == band_pixels
    # Band: 256·4 pixels off by 10 in all channels.
    assert r["band_psnr"] == pytest.approx(10 * math.log10(255**2 / (100 * 256 * 4 / band_pixels)))
    interior = np.ones((256, 256), dtype=bool)
    interior[:, 128 - INTERIOR:128 + INTERIOR] = False
    interior[128 - INTERIOR:128 + INTERIOR, :] = False
    assert r["interior_pixels"] == int(interior.sum())
    assert r["interior_psnr"] == pytest.approx(10 * math.log10(255**2 / (1 / interior.sum())))
    assert r["difference_db"] == pytest.approx(r["interior_psnr"] - r["band_psnr"])
    assert seam_psnr(ref, ref, 128)["difference_db"] != seam_psnr(ref, out, 128)["difference_db"]


def test_rate_saving_reads_the_curve_at_equal_psnr() -> None:
    curve = [{"bpp": 0.25, "psnr": 28.0}, {"bpp": 0.5, "psnr": 30.0}, {"bpp": 1.0, "psnr": 32.0}]
    assert rate_saving(curve, {"bpp": 0.5, "psnr": 30.0}) == pytest.approx(0.0, abs=1e-9)
    assert rate_saving(curve, {"bpp": 0.45, "psnr": 30.0}) == pytest.approx(-10.0)
    assert math.isnan(rate_saving(curve, {"bpp": 2.0, "psnr": 40.0}))  # far outside: no extrapolation
    # Just above the top: the last segment (2 dB per doubling) extended by 0.2 dB.
    assert rate_saving(curve, {"bpp": 1.0, "psnr": 32.2}) == pytest.approx(100 * (2 ** -0.1 - 1))


def test_measure_targets_counts_encodes_and_restores_the_codec(tiny_codec) -> None:
    from conftest import smooth_image
    from tools.benchmarks.family import TARGETS, measure_targets

    rows = measure_targets(tiny_codec, [smooth_image(48, 64, seed=3)])
    assert len(rows) == len(TARGETS)
    assert all(r["encodes"] >= 1 for r in rows)
    assert "encode" not in vars(tiny_codec)  # the counting wrapper is gone
    for r in rows:
        if r["reachable"] and r["metric"] == "bpp":
            assert abs(r["achieved"] / r["target"] - 1) <= 0.03
        if r["reachable"] and r["metric"] == "psnr":
            assert abs(r["achieved"] - r["target"]) <= 0.1


def test_the_base_of_a_family_is_the_family_without_its_deltas(tiny_model) -> None:
    """The family bench needs no separate base file: stripping the deltas gives a model
    that codes every rate exactly like the family's base rate weights."""
    from conftest import loaded, smooth_image
    from tools.benchmarks.family import base_of_family
    from udic.codec import codec_for_file

    family = codec_for_file(tiny_model.path)
    base, size = base_of_family(tiny_model.path)
    assert size < tiny_model.path.stat().st_size  # the deltas are gone
    assert not any(".lora." in k for k in base.model.state_dict())
    image = loaded(smooth_image(32, 48))
    # Rate 2 carries a delta in the tiny family, rate 1 none: the base differs only where a delta is.
    def pixels(codec, q: float) -> np.ndarray:
        return np.asarray(codec.decode(codec.encode(image, q).data).image)

    assert np.array_equal(pixels(base, 1.0), pixels(family, 1.0))
    assert not np.array_equal(pixels(base, 2.0), pixels(family, 2.0))
