"""Per-image adaptive loop filter: a k×k linear filter on the decoded pixels, sent in the file.

A decoder trained on photos leaves systematic errors on other content: a colour or
level shift on flat backgrounds, edges softened in a consistent way.  The encoder
knows both images, so it solves for the linear filter (Wiener/least squares, as in
VVC's adaptive loop filter) that maps the decoded pixels closest to the original,
quantises its coefficients and sends them (~100–300 bytes).  It is RD-gated like
everything else the adaptive encoder tries, costs no network passes, and the
decoder applies it in integer arithmetic, so the output is exact on every machine.

Filter (spec §8): for output channel c at pixel p, with decoded 8-bit values d,

    out_c = clip((d_c(p)·2^F + Σ_{j,o≠0} K[c,j,o]·(d_j(p+o) − d_j(p))
                  + Σ_j G[c,j]·d_j(p) + B[c] + 2^(F−1)) >> F, 0, 255)

over input channels j and the k×k offsets o (edge pixels replicated).  Tap weights act
on differences to the centre, so their rounding error cannot shift the level.
"""

from __future__ import annotations

from functools import lru_cache

import struct
from dataclasses import dataclass

import numpy as np

from .wire import Reader, write_varint
from .entropy import IndexedCoder, logistic_table
from .errors import ContainerError

ALLOWED_TAPS = (1, 3, 5)
MIN_FRAC_BITS, MAX_FRAC_BITS = 4, 14
_SCALE_UNIT = 16  # group scales are stored in 1/16 units
_MAX_SCALE_Q = 16 * 1024  # bounds the coding table (≈ 21·scale entries)
_BAND_ROWS = 128  # rows per band of the fit: bounded memory on huge images
_APPLY_ROWS = 8  # rows per band of the filter: its features stay in cache (1.6x faster than 128)
_MAX_COLS = 2048  # columns per piece of a band: bounded memory on extremely wide images
_FIT_PIXELS = 4_000_000  # the fit reads at most about this many pixels (evenly spread bands)


@dataclass(frozen=True)
class LoopFilter:
    """Integer coefficients: ``taps`` (3, 3·(k²−1)) on differences, ``gains`` (3, 3), ``bias`` (3,)."""

    k: int
    frac_bits: int
    taps: np.ndarray
    gains: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        if self.k not in ALLOWED_TAPS or not MIN_FRAC_BITS <= self.frac_bits <= MAX_FRAC_BITS:
            raise ValueError(f"loop filter k={self.k}, F={self.frac_bits} out of range")
        if self.taps.shape != (3, 3 * (self.k * self.k - 1)) or self.gains.shape != (3, 3) or self.bias.shape != (3,):
            raise ValueError("loop filter coefficient shapes do not match k")

    def is_identity(self) -> bool:
        return not (self.taps.any() or self.gains.any() or self.bias.any())


def _offsets(k: int) -> list[tuple[int, int]]:
    """The k×k offsets without the centre, in raster order (the coefficient order)."""
    r = k // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]


def _features(framed: np.ndarray, r: int, k: int) -> np.ndarray:
    """The filter's inputs for every pixel of a band, in coefficient order.

    ``framed`` is the band's rows with an r-pixel frame, (rows + 2r, w + 2r, 3) uint8.
    Returns (3·(k²−1) + 4, rows·w) float64: the differences d_j(p+o) − d_j(p) by (j, o),
    then the centre values d_j(p), then 1.  The one builder for both the fit and
    :func:`apply`, so the encoder fits exactly what the decoder computes.
    """
    rows, w = framed.shape[0] - 2 * r, framed.shape[1] - 2 * r
    band = np.ascontiguousarray(framed.transpose(2, 0, 1), dtype=np.float64)  # channel-first
    centre = band[:, r : r + rows, r : r + w]
    offsets = _offsets(k)
    n_taps = 3 * len(offsets)
    feats = np.empty((n_taps + 4, rows, w))
    i = 0
    for j in range(3):
        for dy, dx in offsets:  # one exact subtraction of two views per feature
            np.subtract(band[j, r + dy : r + dy + rows, r + dx : r + dx + w], centre[j], out=feats[i])
            i += 1
    feats[n_taps : n_taps + 3] = centre
    feats[n_taps + 3] = 1.0
    return feats.reshape(n_taps + 4, rows * w)


def _column_pieces(width: int) -> list[tuple[int, int]]:
    """Column ranges [left, right) of at most _MAX_COLS: features are per pixel, so a
    band can be cut anywhere (each piece reads its own r-pixel frame)."""
    return [(left, min(width, left + _MAX_COLS)) for left in range(0, width, _MAX_COLS)]


def apply(decoded: np.ndarray, lf: LoopFilter) -> np.ndarray:
    """The filter of spec §8 on an (H, W, 3) uint8 image, exactly.

    Computed as a float64 matrix product per band of rows: every operand is an integer
    (|coefficient| < 2^24, |feature| ≤ 255) and every partial sum stays below 2^40, far
    inside float64's exact-integer range, so any summation order (any BLAS, any thread
    count) gives the same integers as the formula.
    """
    h, w, _ = decoded.shape
    r = lf.k // 2
    padded = np.pad(decoded, ((r, r), (r, r), (0, 0)), mode="edge") if r else decoded
    out = np.empty_like(decoded)
    n_taps = lf.taps.shape[1]
    weights = np.concatenate([lf.taps, lf.gains, lf.bias[:, None]], axis=1).T.astype(np.float64)  # (n, 3)
    half = float(1 << (lf.frac_bits - 1))
    scale = float(1 << lf.frac_bits)
    for top in range(0, h, _APPLY_ROWS):
        bottom = min(h, top + _APPLY_ROWS)
        for left, right in _column_pieces(w):
            feats = _features(padded[top : bottom + 2 * r, left : right + 2 * r], r, lf.k)
            centre = feats[n_taps : n_taps + 3]
            acc = weights.T @ feats + centre * scale + half  # (3, m), exact integers
            q = np.floor(acc / scale)  # = acc >> F: division by a power of two is exact
            out[top:bottom, left:right] = np.clip(q, 0, 255).T.reshape(bottom - top, right - left, 3).astype(np.uint8)
    return out


@dataclass
class Normal:
    """Least-squares statistics of the largest filter; smaller ones are sub-problems of it."""

    k: int
    gram: np.ndarray  # (n, n) over [taps…, centre values (3), 1]
    cross: np.ndarray  # (n, 3) against the residual original − decoded
    pixels: int


def _columns(k_big: int, k: int) -> list[int]:
    """Indexes of a k-filter's features among a k_big-filter's (taps, then gains and bias)."""
    big = _offsets(k_big)
    pos = {o: i for i, o in enumerate(big)}
    n_taps = len(big)
    cols = [j * n_taps + pos[o] for j in range(3) for o in _offsets(k)]
    return cols + [3 * n_taps + j for j in range(4)]


def sample_bands(height: int, width: int) -> list[tuple[int, int]]:
    """Row bands [top, bottom) the encoder fits and compares filters on: all of them, or on
    a huge image about _FIT_PIXELS worth, evenly spread (a fair sample at bounded cost)."""
    tops = list(range(0, height, _BAND_ROWS))
    keep = max(1, min(len(tops), _FIT_PIXELS // max(1, _BAND_ROWS * width)))
    if keep < len(tops):
        tops = [tops[i] for i in np.linspace(0, len(tops) - 1, keep).round().astype(int)]
    return [(top, min(height, top + _BAND_ROWS)) for top in tops]


def squared_error(original: np.ndarray, decoded: np.ndarray, lf: LoopFilter | None,
                  bands: list[tuple[int, int]]) -> tuple[float, int]:
    """(sum of squared errors, pixels) of the filtered image over ``bands``, exactly as
    :func:`apply` would filter those rows of the whole image."""
    h = decoded.shape[0]
    r = 0 if lf is None else lf.k // 2
    sse, pixels = 0.0, 0
    for top, bottom in bands:
        lo, hi = max(0, top - r), min(h, bottom + r)
        piece = decoded[lo:hi] if lf is None else apply(decoded[lo:hi], lf)
        # Rows beyond the image are replicated by apply as by the whole-image filter; rows
        # inside it come from the context read here, so the band's output is the same.
        out = piece[top - lo : top - lo + (bottom - top)]
        diff = out.astype(np.float64) - original[top:bottom].astype(np.float64)
        sse += float(np.sum(diff * diff))
        pixels += diff.shape[0] * diff.shape[1]
    return sse, pixels


def normal_equations(original: np.ndarray, decoded: np.ndarray, k: int = max(ALLOWED_TAPS)) -> Normal:
    """Gram matrix and cross terms of the k×k difference features (float64, encoder only)."""
    h, w, _ = decoded.shape
    r = k // 2
    padded = np.pad(decoded, ((r, r), (r, r), (0, 0)), mode="edge")
    n = 3 * (k * k - 1) + 4
    gram = np.zeros((n, n))
    cross = np.zeros((n, 3))
    bands = sample_bands(h, w)
    pixels = 0
    for top, bottom in bands:
        for left, right in _column_pieces(w):
            feats = _features(padded[top : bottom + 2 * r, left : right + 2 * r], r, k)  # (n, m)
            target = original[top:bottom, left:right].reshape(-1, 3).T.astype(np.float64) - feats[n - 4 : n - 1]
            gram += feats @ feats.T
            cross += feats @ target.T
            pixels += feats.shape[1]
    return Normal(k=k, gram=gram, cross=cross, pixels=pixels)


def fit(normal: Normal, k: int, frac_bits: int, ridge: float = 1e-4) -> LoopFilter:
    """The least-squares k-filter from ``normal`` (k ≤ normal.k), quantised to F bits."""
    cols = _columns(normal.k, k)
    g = normal.gram[np.ix_(cols, cols)]
    c = normal.cross[cols]
    reg = ridge * normal.pixels * np.eye(len(cols))
    reg[-1, -1] = 0.0  # the bias is not shrunk
    try:
        wts = np.linalg.solve(g + reg, c)  # (n, 3)
    except np.linalg.LinAlgError:
        wts = np.linalg.lstsq(g + reg, c, rcond=None)[0]
    q = np.rint(wts.T * (1 << frac_bits)).astype(np.int64)  # (3, n)
    limit = (1 << 24) - 1
    q = np.clip(q, -limit, limit)
    n_taps = len(cols) - 4
    return LoopFilter(k=k, frac_bits=frac_bits, taps=q[:, :n_taps], gains=q[:, n_taps : n_taps + 3],
                      bias=q[:, n_taps + 3])


# ---- the section ----------------------------------------------------------------------------


def _scale_q(values: np.ndarray) -> int:
    """A logistic scale matched to the values' mean magnitude (mean |x| = 2 ln 2 · s)."""
    mean_abs = float(np.abs(values).mean()) if values.size else 0.0
    return int(min(max(round(_SCALE_UNIT * mean_abs / (2 * np.log(2))), 1), _MAX_SCALE_Q))


@lru_cache(maxsize=64)
def _coder(scale_q: int) -> IndexedCoder:
    """Cached: building the table is a Python loop over its symbols (0.15 s at large scales),
    and the encoder's filter search codes the same few scales many times."""
    return IndexedCoder([logistic_table(scale_q / _SCALE_UNIT, 1.0)])


def _groups(lf: LoopFilter) -> list[np.ndarray]:
    return [lf.taps.ravel(), lf.gains.ravel(), lf.bias.ravel()]


def encode(lf: LoopFilter) -> bytes:
    """Section payload: k (u8), F (u8), three group scales (u16 each), then per group its ANS words (varint length first)."""
    groups = _groups(lf)
    scales = [_scale_q(g) for g in groups]
    out = bytearray(struct.pack("<BBHHH", lf.k, lf.frac_bits, *scales))
    for g, s in zip(groups, scales):
        words = _coder(s).encode(g.astype(np.int64), np.zeros(g.size, dtype=np.int64))
        out += write_varint(len(words)) + words
    return bytes(out)


def decode(payload: bytes) -> LoopFilter:
    reader = Reader(payload, len(payload))
    k, frac_bits, *scales = struct.unpack("<BBHHH", reader.take(8, "loop filter"))
    if k not in ALLOWED_TAPS or not MIN_FRAC_BITS <= frac_bits <= MAX_FRAC_BITS:
        raise ContainerError(f"corrupt loop filter section (k {k}, F {frac_bits})")
    if not all(1 <= s <= _MAX_SCALE_Q for s in scales):
        raise ContainerError("corrupt loop filter section (scale out of range)")
    sizes = [3 * 3 * (k * k - 1), 9, 3]
    groups = []
    for size, s in zip(sizes, scales):
        words = reader.take(reader.varint("loop filter"), "loop filter")
        groups.append(_coder(s).decode(words, np.zeros(size, dtype=np.int64)))
    if reader.pos != len(payload):
        raise ContainerError("corrupt loop filter section (trailing bytes)")
    values = np.concatenate(groups)
    if ((values >= 1 << 24) | (values <= -(1 << 24))).any():
        raise ContainerError("corrupt loop filter section (coefficient out of range)")
    return LoopFilter(k=k, frac_bits=frac_bits, taps=groups[0].reshape(3, -1), gains=groups[1].reshape(3, 3),
                      bias=groups[2])
