"""Tests for udic.metrics: PSNR, MS-SSIM, PCHIP and the Bjøntegaard deltas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from udic.metrics import Pchip, bd_psnr, bd_rate, ms_ssim_rgb, ms_ssim_scales, mse_rgb, psnr_rgb


def _image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: structured enough for SSIM to mean something."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255.0 / w, y * 255.0 / h, (x + y) * 127.0 / (h + w)], axis=-1)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- PSNR


def test_psnr_hand_computed() -> None:
    ref = np.full((4, 5, 3), 100, np.uint8)
    test = ref.copy()
    test[:, :, 1] += 3  # one channel off by 3 everywhere: MSE = 9/3 = 3
    assert mse_rgb(ref, test) == pytest.approx(3.0)
    assert psnr_rgb(ref, test) == pytest.approx(10 * math.log10(255**2 / 3), abs=1e-12)
    test2 = ref + 1  # every sample off by one: MSE 1 -> 48.1308 dB
    assert psnr_rgb(ref, test2.astype(np.uint8)) == pytest.approx(48.1308036, abs=1e-6)


def test_psnr_identical_is_inf_and_uint8_does_not_wrap() -> None:
    a = _image()
    assert psnr_rgb(a, a.copy()) == math.inf
    b = np.zeros_like(a)
    c = np.full_like(a, 255)
    # 0 - 255 must not wrap around in uint8 arithmetic.
    assert psnr_rgb(b, c) == pytest.approx(0.0, abs=1e-12)


def test_psnr_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="sizes differ"):
        psnr_rgb(_image(48, 64), _image(48, 63))
    with pytest.raises(ValueError, match="RGB"):
        psnr_rgb(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))


# --------------------------------------------------------------------------- MS-SSIM


def test_ms_ssim_scale_count() -> None:
    assert ms_ssim_scales(176, 500) == 5  # 11·2⁴: the standard five scales fit exactly
    assert ms_ssim_scales(175, 500) == 4
    assert ms_ssim_scales(48, 64) == 3  # 48 → 24 → 12; 6 would be too small
    assert ms_ssim_scales(11, 11) == 1
    assert ms_ssim_scales(10, 400) == 0


def test_ms_ssim_identity_symmetry_and_ordering() -> None:
    a = _image()
    assert ms_ssim_rgb(a, a) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(1)
    light = np.clip(a + rng.normal(0, 4, a.shape), 0, 255).astype(np.uint8)
    heavy = np.clip(a + rng.normal(0, 30, a.shape), 0, 255).astype(np.uint8)
    m_light, m_heavy = ms_ssim_rgb(a, light), ms_ssim_rgb(a, heavy)
    assert 0.0 < m_heavy < m_light < 1.0
    assert ms_ssim_rgb(light, a) == pytest.approx(m_light, abs=1e-12)


def test_ms_ssim_too_small_raises() -> None:
    tiny = _image(8, 40)
    with pytest.raises(ValueError, match="too small"):
        ms_ssim_rgb(tiny, tiny)


def test_ms_ssim_matches_pytorch_msssim() -> None:
    """Same definition as pytorch_msssim (used by CompressAI) on a 5-scale image."""
    torch = pytest.importorskip("torch")
    msssim = pytest.importorskip("pytorch_msssim")
    a = _image(192, 192, seed=3)
    rng = np.random.default_rng(4)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)

    def t(x: np.ndarray):  # noqa: ANN202
        return torch.from_numpy(x).permute(2, 0, 1)[None].double()

    expected = float(msssim.ms_ssim(t(a), t(b), data_range=255, size_average=True))
    assert ms_ssim_rgb(a, b) == pytest.approx(expected, abs=1e-4)


# --------------------------------------------------------------------------- PCHIP


def test_pchip_interpolates_and_preserves_monotonicity() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    y = np.array([0.0, 0.1, 5.0, 5.1, 5.2])  # monotone with a sharp step: a cubic spline overshoots here
    p = Pchip(x, y)
    assert np.allclose(p(x), y)
    dense = p(np.linspace(0, 10, 2001))
    assert np.all(np.diff(dense) >= -1e-12)
    assert dense.min() >= 0.0 - 1e-12 and dense.max() <= 5.2 + 1e-12


def test_pchip_linear_data_is_exact() -> None:
    x = np.array([1.0, 2.5, 3.0, 7.0])
    p = Pchip(x, 2 * x + 1)
    assert np.allclose(p([1.2, 4.4, 6.9]), [3.4, 9.8, 14.8])
    # ∫ (2x+1) dx from 1.5 to 6 = [x² + x] = 42 - 3.75
    assert p.integrate(1.5, 6.0) == pytest.approx(38.25, abs=1e-12)


def test_pchip_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        Pchip([1.0], [2.0])
    with pytest.raises(ValueError):
        Pchip([0.0, 1.0, 1.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError):
        Pchip([0.0, 1.0], [0.0, 1.0]).integrate(-1.0, 0.5)


def test_pchip_matches_scipy() -> None:
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(7)
    for n in (2, 3, 4, 6, 9):
        x = np.cumsum(rng.uniform(0.1, 2.0, n))
        y = rng.normal(size=n)
        mine, ref = Pchip(x, y), interpolate.PchipInterpolator(x, y)
        xq = np.linspace(x[0], x[-1], 257)
        assert np.allclose(mine(xq), ref(xq), atol=1e-12)
        a, b = x[0] + 0.3 * (x[1] - x[0]), x[-1] - 0.1
        assert mine.integrate(a, b) == pytest.approx(float(ref.integrate(a, b)), abs=1e-10)


# --------------------------------------------------------------------------- BD metrics

RATES = [0.12, 0.25, 0.5, 0.9, 1.5]
PSNRS = [27.1, 29.8, 32.6, 35.0, 37.4]


def test_bd_rate_scaled_rates_hand_computed() -> None:
    assert bd_rate(RATES, PSNRS, [r * 0.9 for r in RATES], PSNRS) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, [r * 1.25 for r in RATES], PSNRS) == pytest.approx(25.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-12)


def test_bd_rate_different_slopes_hand_computed() -> None:
    """Both curves linear in (PSNR, log10 rate), so PCHIP is exact and the integral is closed-form.

    A: log10 r = p/10.  B: log10 r = p/12 + c.  Over p ∈ [30, 40] the mean log difference is
    c − 35/60, so with c = 35/60 + log10(0.8) the BD-rate is exactly −20 %.
    """
    p = np.array([30.0, 32.5, 35.0, 37.5, 40.0])
    c = 35.0 / 60.0 + math.log10(0.8)
    ra = 10 ** (p / 10)
    rb = 10 ** (p / 12 + c)
    assert bd_rate(ra, p, rb, p) == pytest.approx(-20.0, abs=1e-9)


def test_bd_rate_uses_only_the_overlap() -> None:
    """B covers only 32.6–35 dB of A's range; on that range B is exactly 10 % cheaper."""
    p = np.linspace(28.0, 40.0, 7)
    ra = 10 ** (p / 10)
    keep = (p >= 32.0) & (p <= 36.0)
    assert bd_rate(ra, p, 0.9 * ra[keep], p[keep]) == pytest.approx(-10.0, abs=1e-9)


def test_bd_rate_published_jctvc_examples() -> None:
    """Published worked examples: RD data of JCTVC-E137 with the BD-rates of the JCT-VC PCHIP
    spreadsheet, as checked into Netflix/vmaf (python/test/bd_rate_calculator_test.py,
    ``BDrateCalculatorJCTVCTest``: −0.00465215420752807 and −0.018779823450567612 as fractions).
    """
    r1a = [108048.8736, 61279.976, 33905.6656, 18883.6928]
    p1a = [43.6471, 40.3953, 37.247, 34.2911]
    r1b = [108061.2784, 61299.9936, 33928.7472, 18910.912]
    p1b = [43.6768, 40.4232, 37.2761, 34.3147]
    assert bd_rate(r1a, p1a, r1b, p1b) == pytest.approx(-0.465215420752807, abs=1e-6)
    r2a = [40433.8848, 7622.7456, 2394.488, 1017.6184]
    p2a = [37.5761, 35.3756, 33.8977, 32.0603]
    r2b = [40370.12, 7587.0024, 2390.0944, 1017.0984]
    p2b = [37.5982, 35.4025, 33.9194, 32.0822]
    assert bd_rate(r2a, p2a, r2b, p2b) == pytest.approx(-1.8779823450567612, abs=1e-6)


def test_bd_psnr_hand_computed() -> None:
    assert bd_psnr(RATES, PSNRS, RATES, [p + 0.5 for p in PSNRS]) == pytest.approx(0.5, abs=1e-12)
    assert bd_psnr(RATES, PSNRS, RATES, [p - 1.25 for p in PSNRS]) == pytest.approx(-1.25, abs=1e-12)
    # PSNR linear in log10(rate) with slope 10 dB/decade: scaling rates by 0.9 gains 10·log10(1/0.9) dB.
    r = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    p = 30 + 10 * np.log10(r / 0.1)
    assert bd_psnr(r, p, 0.9 * r, p) == pytest.approx(10 * math.log10(1 / 0.9), abs=1e-9)


def test_bd_errors() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        bd_rate([1.0], [30.0], [1.0, 2.0], [30.0, 33.0])
    with pytest.raises(ValueError, match="at least 2"):
        bd_psnr([1.0, 1.0], [30.0, 30.0], [1.0, 2.0], [30.0, 33.0])  # one point, given twice
    with pytest.raises(ValueError, match="overlap"):
        bd_rate([1.0, 2.0], [30.0, 32.0], [1.0, 2.0], [33.0, 35.0])
    with pytest.raises(ValueError, match="overlap"):
        bd_psnr([1.0, 2.0], [30.0, 32.0], [3.0, 4.0], [30.0, 32.0])
    with pytest.raises(ValueError, match="same quality"):
        bd_rate([1.0, 2.0, 3.0], [30.0, 32.0, 32.0], [1.0, 2.0], [30.0, 33.0])
    with pytest.raises(ValueError, match="positive"):
        bd_rate([0.0, 2.0], [30.0, 32.0], [1.0, 2.0], [30.0, 33.0])
