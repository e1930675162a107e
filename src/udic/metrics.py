"""Quality metrics and Bjøntegaard deltas for codec comparisons.

Why these exact definitions:
- PSNR-RGB is the MSE pooled over all three channels (not the mean of per-channel
  PSNRs), which is what the learned-compression literature reports for Kodak/CLIC.
- MS-SSIM follows Wang, Simoncelli & Bovik (2003): 11-tap Gaussian window, σ = 1.5,
  K1 = 0.01, K2 = 0.03, five scales with the standard weights, 2×2 average-pool
  downsampling and "valid" filtering.  It is computed on each RGB channel separately
  and the three per-channel values are averaged — the same convention as
  ``pytorch_msssim.ms_ssim`` used by CompressAI, so numbers are comparable with
  published RD curves.  Negative contrast-structure terms are clamped to 0 (as
  pytorch_msssim does) so the fractional powers stay real.
- BD-rate/BD-PSNR use piecewise cubic Hermite interpolation (PCHIP, Fritsch–Carlson
  monotone slopes, the variant in the JCT-VC/JVET CTC spreadsheets) integrated
  exactly over the overlapping range.  Unlike the original single cubic fit of
  VCEG-M33, PCHIP cannot overshoot between points, so odd curves do not produce
  absurd numbers.  Implemented here in numpy so scipy stays optional.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "MS_SSIM_WEIGHTS",
    "Pchip",
    "bd_psnr",
    "bd_rate",
    "ms_ssim_rgb",
    "ms_ssim_scales",
    "mse_rgb",
    "psnr_rgb",
]

# Wang et al. 2003, Table/eq. (7): weights for scales 1 (finest) .. 5 (coarsest).
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WIN_SIZE = 11
_WIN_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03
_DATA_RANGE = 255.0


def _check_pair(ref: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate two HxWx3 images of equal shape; metrics on mismatched shapes are meaningless."""
    a = np.asarray(ref)
    b = np.asarray(test)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {a.shape}")
    if a.shape != b.shape:
        raise ValueError(f"image sizes differ: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
    if a.size == 0:
        raise ValueError("empty image")
    return a.astype(np.float64), b.astype(np.float64)


def mse_rgb(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean squared error over all pixels and all three channels (8-bit scale)."""
    a, b = _check_pair(ref, test)
    return float(np.mean((a - b) ** 2))


def psnr_rgb(ref: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of ``test`` against ``ref`` (uint8 HxWx3), MSE pooled over RGB.

    Returns ``inf`` for identical images, so lossless points are visible as such.
    """
    return psnr_from_mse(mse_rgb(ref, test))


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of an 8-bit MSE (``inf`` for 0): one formula for measured and encoder-known MSEs."""
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(_DATA_RANGE**2 / mse)


# --------------------------------------------------------------------------- MS-SSIM


def _gaussian_window(size: int = _WIN_SIZE, sigma: float = _WIN_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; the 2-D window is its outer product (separable)."""
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Separable 'valid' 2-D filtering of HxW (no padding, like the reference code)."""
    k = win.shape[0]
    rows = np.lib.stride_tricks.sliding_window_view(img, k, axis=1) @ win
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=0) @ win


def _ssim_terms(x: np.ndarray, y: np.ndarray, win: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure term of one channel at one scale."""
    c1 = (_K1 * _DATA_RANGE) ** 2
    c2 = (_K2 * _DATA_RANGE) ** 2
    mu_x = _filter_valid(x, win)
    mu_y = _filter_valid(y, win)
    sxx = _filter_valid(x * x, win) - mu_x**2
    syy = _filter_valid(y * y, win) - mu_y**2
    sxy = _filter_valid(x * y, win) - mu_x * mu_y
    cs_map = (2.0 * sxy + c2) / (sxx + syy + c2)
    lum_map = (2.0 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return float(np.mean(lum_map * cs_map)), float(np.mean(cs_map))


def _downsample(img: np.ndarray) -> np.ndarray:
    """2×2 average pooling; an odd last row/column is dropped (it has no 2×2 partner)."""
    h, w = img.shape
    h2, w2 = h // 2 * 2, w // 2 * 2
    v = img[:h2, :w2]
    return 0.25 * (v[0::2, 0::2] + v[1::2, 0::2] + v[0::2, 1::2] + v[1::2, 1::2])


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales fit an image: each scale must still hold an 11×11 window.

    The standard five scales need a shorter side of at least 11·2⁴ = 176 px.  Smaller
    images use fewer scales (the first ones, i.e. the finest), with their weights
    renormalised to sum to 1, rather than failing or padding — so thumbnails and
    the tiny test images still get a meaningful number.  Returns 0 when even one
    scale does not fit (shorter side < 11 px).
    """
    side = min(height, width)
    scales = 0
    while scales < len(MS_SSIM_WEIGHTS) and side >= _WIN_SIZE:
        scales += 1
        side //= 2
    return scales


def ms_ssim_rgb(ref: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM of two uint8 HxWx3 images: per RGB channel, then averaged over channels.

    Raises ``ValueError`` for images whose shorter side is below 11 px (no scale fits).
    """
    a, b = _check_pair(ref, test)
    h, w = a.shape[:2]
    scales = ms_ssim_scales(h, w)
    if scales == 0:
        raise ValueError(f"image {w}x{h} is too small for MS-SSIM (needs at least {_WIN_SIZE} px per side)")
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales], dtype=np.float64)
    weights = weights / weights.sum()
    win = _gaussian_window()
    values = []
    for c in range(3):
        x, y = a[:, :, c], b[:, :, c]
        terms = []
        for s in range(scales):
            ssim, cs = _ssim_terms(x, y, win)
            # The coarsest scale contributes the full SSIM (with luminance), the others cs only.
            terms.append(max(ssim if s == scales - 1 else cs, 0.0))
            if s < scales - 1:
                x, y = _downsample(x), _downsample(y)
        values.append(float(np.prod(np.power(np.asarray(terms), weights))))
    return float(np.mean(values))


# --------------------------------------------------------------------------- PCHIP


class Pchip:
    """Monotone piecewise cubic Hermite interpolant (Fritsch–Carlson / Fritsch–Butland slopes).

    Interior slopes are the weighted harmonic mean of neighbouring secants (zero at
    local extrema); end slopes use the one-sided three-point formula, limited so they
    keep the secant's sign and do not exceed three times it — the same scheme as
    MATLAB's ``pchip``, SciPy's ``PchipInterpolator`` and the CTC spreadsheets.
    """

    def __init__(self, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> None:
        xs = np.asarray(x, dtype=np.float64)
        ys = np.asarray(y, dtype=np.float64)
        if xs.ndim != 1 or xs.shape != ys.shape:
            raise ValueError("x and y must be 1-D sequences of equal length")
        if xs.size < 2:
            raise ValueError("interpolation needs at least 2 points")
        if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
            raise ValueError("interpolation points must be finite")
        if np.any(np.diff(xs) <= 0):
            raise ValueError("x must be strictly increasing")
        self.x = xs
        self.y = ys
        self.d = self._slopes(xs, ys)

    @staticmethod
    def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
        d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(d) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(d) > abs(3.0 * m0):
            return 3.0 * m0
        return float(d)

    @classmethod
    def _slopes(cls, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        h = np.diff(x)
        m = np.diff(y) / h
        n = x.size
        d = np.zeros(n)
        if n == 2:
            d[:] = m[0]  # a straight line: the only shape-preserving choice
            return d
        for k in range(1, n - 1):
            if m[k - 1] * m[k] > 0:
                w1 = 2.0 * h[k] + h[k - 1]
                w2 = h[k] + 2.0 * h[k - 1]
                d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])
            # else: local extremum or flat secant -> slope 0 keeps monotonicity
        d[0] = cls._end_slope(h[0], h[1], m[0], m[1])
        d[-1] = cls._end_slope(h[-1], h[-2], m[-1], m[-2])
        return d

    def _coefficients(self, k: int) -> tuple[float, float, float, float]:
        """Power-basis coefficients of segment k in t = x - x[k]: y0 + d0 t + c2 t² + c3 t³."""
        h = self.x[k + 1] - self.x[k]
        delta = (self.y[k + 1] - self.y[k]) / h
        d0, d1 = self.d[k], self.d[k + 1]
        c2 = (3.0 * delta - 2.0 * d0 - d1) / h
        c3 = (d0 + d1 - 2.0 * delta) / (h * h)
        return float(self.y[k]), float(d0), float(c2), float(c3)

    def __call__(self, xq: float | Sequence[float] | np.ndarray) -> np.ndarray:
        """Evaluate at ``xq``; points outside the knots extrapolate the end cubic."""
        q = np.asarray(xq, dtype=np.float64)
        k = np.clip(np.searchsorted(self.x, q, side="right") - 1, 0, self.x.size - 2)
        out = np.empty_like(q)
        flat_q, flat_k, flat_out = q.reshape(-1), k.reshape(-1), out.reshape(-1)
        for i, (qi, ki) in enumerate(zip(flat_q, flat_k)):
            y0, d0, c2, c3 = self._coefficients(int(ki))
            t = qi - self.x[ki]
            flat_out[i] = y0 + t * (d0 + t * (c2 + t * c3))
        return out

    def _segment_integral(self, k: int, t0: float, t1: float) -> float:
        y0, d0, c2, c3 = self._coefficients(k)

        def antiderivative(t: float) -> float:
            return t * (y0 + t * (d0 / 2.0 + t * (c2 / 3.0 + t * c3 / 4.0)))

        return antiderivative(t1) - antiderivative(t0)

    def integrate(self, a: float, b: float) -> float:
        """Exact integral of the piecewise cubic from ``a`` to ``b`` (both within the knots)."""
        if b < a:
            return -self.integrate(b, a)
        lo, hi = self.x[0], self.x[-1]
        tol = 1e-12 * max(1.0, abs(lo), abs(hi))
        if a < lo - tol or b > hi + tol:
            raise ValueError("integration bounds lie outside the interpolated range")
        total = 0.0
        for k in range(self.x.size - 1):
            s0 = max(a, self.x[k])
            s1 = min(b, self.x[k + 1])
            if s1 > s0:
                total += self._segment_integral(k, s0 - self.x[k], s1 - self.x[k])
        return total


# --------------------------------------------------------------------------- BD metrics


def _curve(rate: Sequence[float], quality: Sequence[float], which: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one RD curve, drop exact duplicate points, return (log10 rate, quality)."""
    r = np.asarray(rate, dtype=np.float64).reshape(-1)
    q = np.asarray(quality, dtype=np.float64).reshape(-1)
    if r.shape != q.shape:
        raise ValueError(f"curve {which}: {r.size} rates but {q.size} quality values")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise ValueError(f"curve {which}: rates and qualities must be finite")
    if np.any(r <= 0):
        raise ValueError(f"curve {which}: rates must be positive")
    pairs = sorted(set(zip(r.tolist(), q.tolist())))
    if len(pairs) < 2:
        raise ValueError(f"curve {which}: BD metrics need at least 2 distinct points, got {len(pairs)}")
    arr = np.asarray(pairs)
    return np.log10(arr[:, 0]), arr[:, 1]


def _interp_over(x: np.ndarray, y: np.ndarray, which: str, axis: str) -> Pchip:
    """PCHIP of y over x after sorting by x; equal x with different y is ambiguous."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    if np.any(np.diff(xs) == 0):
        raise ValueError(f"curve {which}: two points share the same {axis}")
    return Pchip(xs, ys)


def bd_rate(
    rate_a: Sequence[float],
    psnr_a: Sequence[float],
    rate_b: Sequence[float],
    psnr_b: Sequence[float],
) -> float:
    """Bjøntegaard delta rate of curve B against anchor A, in percent.

    Negative means B needs fewer bits than A for the same quality.  log10(rate) is
    interpolated as a PCHIP function of PSNR for each curve, both are integrated
    exactly over the PSNR range the curves share, and the mean log-rate difference
    is turned back into a ratio: 100·(10^avg − 1).  Works for any number of points
    ≥ 2 per curve.  Raises ``ValueError`` when a curve has < 2 points or the PSNR
    ranges do not overlap.
    """
    la, qa = _curve(rate_a, psnr_a, "A")
    lb, qb = _curve(rate_b, psnr_b, "B")
    lo = max(qa.min(), qb.min())
    hi = min(qa.max(), qb.max())
    if not hi > lo:
        raise ValueError("the two curves' quality ranges do not overlap")
    fa = _interp_over(qa, la, "A", "quality")
    fb = _interp_over(qb, lb, "B", "quality")
    avg = (fb.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    return 100.0 * (10.0**avg - 1.0)


def bd_psnr(
    rate_a: Sequence[float],
    psnr_a: Sequence[float],
    rate_b: Sequence[float],
    psnr_b: Sequence[float],
) -> float:
    """Bjøntegaard delta PSNR of curve B against anchor A, in dB at equal rate.

    PSNR is interpolated as a PCHIP function of log10(rate), and the curves'
    difference is averaged over the log-rate range they share.  Positive means B
    is better.  Same errors as :func:`bd_rate`.
    """
    la, qa = _curve(rate_a, psnr_a, "A")
    lb, qb = _curve(rate_b, psnr_b, "B")
    lo = max(la.min(), lb.min())
    hi = min(la.max(), lb.max())
    if not hi > lo:
        raise ValueError("the two curves' rate ranges do not overlap")
    fa = _interp_over(la, qa, "A", "rate")
    fb = _interp_over(lb, qb, "B", "rate")
    return (fb.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
