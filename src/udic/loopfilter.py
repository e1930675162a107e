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

Activity classes (format version ≥ 8): edges and flat areas want different corrections
(sharpen one, level the other), so a filter may split the pixels into up to 8 classes by
the local activity of the decoded image and add, per class ≥ 1, a small own-channel 3×3
correction (8 taps and a bias per channel, 27 numbers a class).  Measured before building
it (least squares, 6 Kodak and 6 out-of-domain images at three rates): four classes add
0.02–0.07 dB on photos and 0.05–0.22 dB on comics, screenshots and vector art over one
5×5 filter, for 1–4 % more section bytes than they save at the lowest rate.  On real files
(effort 1, qualities 0–5, 6 images per set spread over each, syn14) the BD-rate with classes
against without: Kodak −0.2 %, comics −1.3 %, line art −0.9 %, vector art −1.7 %, screenshots
−1.7 %, pixel art −0.3 %, for 9–28 % more encode time (one more pass over the image).
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
# The fit reads at most about this many pixels (evenly spread bands).  Session 18, a 2.4 MP photo
# mosaic at -q 3: 4 M (every row) against 1 M, +0.15 % bytes at the same PSNR (+0.001 dB) for 27 %
# less encode time (26.1 → 19.1 s); images under ~1 MP (Kodak, the dev sets) are fitted whole.
_FIT_PIXELS = 1_000_000
MAX_CLASSES = 8
CLASS_FLAG = 0x80  # in the k byte: activity classes follow (format version ≥ 8)
CLASS_TAPS = 9  # per class ≥ 1 and channel: the 3×3 own-channel differences (8), then a bias
ACTIVITY_RADIUS = 2  # rows and columns an activity reads beyond its pixel
MAX_THRESHOLD = 1 << 16  # activities are below 9·4·1020 < 2^16


@dataclass(frozen=True)
class LoopFilter:
    """Integer coefficients: ``taps`` (3, 3·(k²−1)) on differences, ``gains`` (3, 3), ``bias`` (3,)."""

    k: int
    frac_bits: int
    taps: np.ndarray
    gains: np.ndarray
    bias: np.ndarray
    # Activity classes: thresholds t_1 < … < t_{C−1} (none = one class) and, for classes
    # 1 … C−1, the corrections (C−1, 3, CLASS_TAPS): own-channel 3×3 taps, then the bias.
    thresholds: tuple[int, ...] = ()
    class_taps: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.k not in ALLOWED_TAPS or not MIN_FRAC_BITS <= self.frac_bits <= MAX_FRAC_BITS:
            raise ValueError(f"loop filter k={self.k}, F={self.frac_bits} out of range")
        if self.taps.shape != (3, 3 * (self.k * self.k - 1)) or self.gains.shape != (3, 3) or self.bias.shape != (3,):
            raise ValueError("loop filter coefficient shapes do not match k")
        t = self.thresholds
        if len(t) >= MAX_CLASSES or any(not 0 < a < MAX_THRESHOLD for a in t) or any(b <= a for a, b in zip(t, t[1:])):
            raise ValueError(f"loop filter thresholds {t} out of range")
        shape = (len(t), 3, CLASS_TAPS)
        if (self.class_taps.shape if self.class_taps is not None else (0, 3, CLASS_TAPS)) != shape:
            raise ValueError("loop filter class corrections do not match the thresholds")

    @property
    def classes(self) -> int:
        return len(self.thresholds) + 1

    @property
    def halo(self) -> int:
        """Rows (and columns) beyond a pixel that its output depends on."""
        return max(self.k // 2, ACTIVITY_RADIUS if self.thresholds else 0)

    def is_identity(self) -> bool:
        corrections = self.class_taps is not None and bool(self.class_taps.any())
        return not (self.taps.any() or self.gains.any() or self.bias.any() or corrections)


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


def activity(framed: np.ndarray) -> np.ndarray:
    """Spec §8's activity of every pixel of a band framed by ACTIVITY_RADIUS pixels
    ((rows + 4, w + 4, 3) uint8): with g = d_0 + 2·d_1 + d_2, the sum over the pixel's 3×3
    window of |4·g(q) − g(q ± (1, 0)) − g(q ± (0, 1))| (integers, < 2^16)."""
    d = framed.astype(np.int64)
    g = d[..., 0] + 2 * d[..., 1] + d[..., 2]
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    rows, w = lap.shape[0] - 2, lap.shape[1] - 2
    act = np.zeros((rows, w), dtype=np.int64)
    for dy in range(3):
        for dx in range(3):
            act += lap[dy : dy + rows, dx : dx + w]
    return act


def pixel_classes(framed: np.ndarray, thresholds: tuple[int, ...]) -> np.ndarray:
    """Each pixel's class: the number of thresholds ≤ its activity, flattened (rows·w)."""
    return np.searchsorted(np.asarray(thresholds, dtype=np.int64), activity(framed).ravel(), side="right")


def _own_features(plane: np.ndarray, frame: int) -> np.ndarray:
    """A class correction's inputs for one channel of a framed band (float64, channel
    first): the 3×3 differences to the centre (raster order, centre skipped), then 1."""
    rows, w = plane.shape[0] - 2 * frame, plane.shape[1] - 2 * frame
    centre = plane[frame : frame + rows, frame : frame + w]
    feats = np.empty((CLASS_TAPS, rows, w))
    for i, (dy, dx) in enumerate(_offsets(3)):
        np.subtract(plane[frame + dy : frame + dy + rows, frame + dx : frame + dx + w], centre, out=feats[i])
    feats[CLASS_TAPS - 1] = 1.0
    return feats.reshape(CLASS_TAPS, rows * w)


def _class_terms(framed: np.ndarray, lf: LoopFilter) -> np.ndarray:
    """Σ of the class corrections for every pixel of a band framed by ACTIVITY_RADIUS:
    (3, rows·w), exact integers in float64 (|term| < 2^36)."""
    assert lf.class_taps is not None
    cls = pixel_classes(framed, lf.thresholds)
    table = np.zeros((lf.classes, 3, CLASS_TAPS))
    table[1:] = lf.class_taps
    band = np.ascontiguousarray(framed.transpose(2, 0, 1), dtype=np.float64)
    out = np.empty((3, cls.size))
    for c in range(3):
        feats = _own_features(band[c], ACTIVITY_RADIUS)  # (9, m)
        out[c] = np.einsum("fm,mf->m", feats, table[cls, c])
    return out


def _inner(framed: np.ndarray, frame: int, r: int) -> np.ndarray:
    """A band framed by ``frame`` pixels cut down to an r-pixel frame (r ≤ frame)."""
    cut = frame - r
    return framed[cut : framed.shape[0] - cut, cut : framed.shape[1] - cut]


def apply(decoded: np.ndarray, lf: LoopFilter) -> np.ndarray:
    """The filter of spec §8 on an (H, W, 3) uint8 image, exactly.

    Computed as a float64 matrix product per band of rows: every operand is an integer
    (|coefficient| < 2^24, |feature| ≤ 255) and every partial sum stays below 2^40, far
    inside float64's exact-integer range, so any summation order (any BLAS, any thread
    count) gives the same integers as the formula.
    """
    h, w, _ = decoded.shape
    r, frame = lf.k // 2, lf.halo
    padded = np.pad(decoded, ((frame, frame), (frame, frame), (0, 0)), mode="edge") if frame else decoded
    out = np.empty_like(decoded)
    n_taps = lf.taps.shape[1]
    weights = np.concatenate([lf.taps, lf.gains, lf.bias[:, None]], axis=1).T.astype(np.float64)  # (n, 3)
    half = float(1 << (lf.frac_bits - 1))
    scale = float(1 << lf.frac_bits)
    for top in range(0, h, _APPLY_ROWS):
        bottom = min(h, top + _APPLY_ROWS)
        for left, right in _column_pieces(w):
            framed = padded[top : bottom + 2 * frame, left : right + 2 * frame]
            feats = _features(_inner(framed, frame, r), r, lf.k)
            centre = feats[n_taps : n_taps + 3]
            acc = weights.T @ feats + centre * scale + half  # (3, m), exact integers
            if lf.thresholds:
                acc += _class_terms(framed, lf)
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
    # At least the first and the last band, however wide the image: a sample spread over it.
    keep = max(min(2, len(tops)), min(len(tops), _FIT_PIXELS // max(1, _BAND_ROWS * width)))
    if keep < len(tops):
        tops = [tops[i] for i in np.linspace(0, len(tops) - 1, keep).round().astype(int)]
    return [(top, min(height, top + _BAND_ROWS)) for top in tops]


def squared_error(original: np.ndarray, decoded: np.ndarray, lf: LoopFilter | None,
                  bands: list[tuple[int, int]]) -> tuple[float, int]:
    """(sum of squared errors, pixels) of the filtered image over ``bands``, exactly as
    :func:`apply` would filter those rows of the whole image."""
    h = decoded.shape[0]
    r = 0 if lf is None else lf.halo
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


_PIECE_ROWS = 16  # rows per piece of the fit and of comparisons: features in cache (~7 MB at 768 wide)


def _pieces(bands: list[tuple[int, int]], width: int):
    """(top, bottom, left, right) of the pieces the encoder's statistics are summed over: every
    band cut into _PIECE_ROWS rows and _MAX_COLS columns.  Why: a 128-row band's features are
    ~60 MB at 768 wide, built and read from memory; 16-row pieces stay in cache and made the
    fit ~2x faster.  Every statistic is a sum of integer products far inside float64's exact
    range, so the cut changes no number."""
    for top, bottom in bands:
        for start in range(top, bottom, _PIECE_ROWS):
            for left, right in _column_pieces(width):
                yield start, min(bottom, start + _PIECE_ROWS), left, right


def squared_errors(original: np.ndarray, decoded: np.ndarray, filters: list[LoopFilter],
                   bands: list[tuple[int, int]]) -> list[tuple[float, int]]:
    """:func:`squared_error` of each filter, in one pass.  Why: the encoder compares six
    shapes and then three class splits, and applying each filter rebuilt the same features;
    here each piece's features are built once (the largest k's: a smaller filter's are a subset,
    from the same edge-replicated frame) and every filter's output is one matrix product.
    Exactly :func:`apply`'s integers (every operand an integer, every sum far inside float64's
    exact range), so exactly the same errors."""
    if not filters:
        return []
    h, w, _ = decoded.shape
    k_big = max(lf.k for lf in filters)
    r = k_big // 2
    frame = max(lf.halo for lf in filters)
    padded = np.pad(decoded, ((frame, frame), (frame, frame), (0, 0)), mode="edge")
    n = 3 * (k_big * k_big - 1) + 4
    count = len(filters)
    weights = np.zeros((n, 3 * count))
    scale = np.empty(3 * count)
    for s, lf in enumerate(filters):
        own = np.concatenate([lf.taps, lf.gains, lf.bias[:, None]], axis=1).T.astype(np.float64)  # (n_lf, 3)
        weights[_columns(k_big, lf.k), 3 * s : 3 * s + 3] = own
        scale[3 * s : 3 * s + 3] = float(1 << lf.frac_bits)
    half = (scale / 2)[:, None]
    scale = scale[:, None]
    sse = np.zeros(count)
    pixels = 0
    for top, bottom, left, right in _pieces(bands, w):
        framed = padded[top : bottom + 2 * frame, left : right + 2 * frame]
        feats = _features(_inner(framed, frame, r), r, k_big)
        centre = feats[n - 4 : n - 1]
        acc = weights.T @ feats + np.tile(centre, (count, 1)) * scale + half  # (3·count, m)
        for s, lf in enumerate(filters):
            if lf.thresholds:
                acc[3 * s : 3 * s + 3] += _class_terms(_inner(framed, frame, ACTIVITY_RADIUS), lf)
        out = np.clip(np.floor(acc / scale), 0, 255).reshape(count, 3, -1)
        diff = out - original[top:bottom, left:right].reshape(-1, 3).T.astype(np.float64)
        sse += np.einsum("scm,scm->s", diff, diff)
        pixels += diff.shape[2]
    return [(float(e), pixels) for e in sse]


def normal_equations(original: np.ndarray, decoded: np.ndarray, k: int = max(ALLOWED_TAPS)) -> Normal:
    """Gram matrix and cross terms of the k×k difference features (float64, encoder only)."""
    h, w, _ = decoded.shape
    r = k // 2
    padded = np.pad(decoded, ((r, r), (r, r), (0, 0)), mode="edge")
    n = 3 * (k * k - 1) + 4
    gram = np.zeros((n, n))
    cross = np.zeros((n, 3))
    pixels = 0
    for top, bottom, left, right in _pieces(sample_bands(h, w), w):
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


def activity_thresholds(decoded: np.ndarray, classes: int) -> tuple[int, ...]:
    """Encoder: thresholds that split the fitted rows' pixels into ``classes`` about equal
    groups by activity (fewer where activities repeat; () when they cannot be split)."""
    h, w, _ = decoded.shape
    frame = ACTIVITY_RADIUS
    padded = np.pad(decoded, ((frame, frame), (frame, frame), (0, 0)), mode="edge")
    acts = [activity(padded[top : bottom + 2 * frame, left : right + 2 * frame]).ravel()
            for top, bottom in sample_bands(h, w) for left, right in _column_pieces(w)]
    act = np.concatenate(acts)
    cuts = np.quantile(act, np.arange(1, classes) / classes, method="higher").astype(np.int64)
    return tuple(int(t) for t in np.unique(cuts) if 0 < t < MAX_THRESHOLD)


@dataclass
class ClassNormal:
    """Least-squares statistics of a filter with activity classes, per output channel: the
    unknowns are the k-filter's (shared by the three channels' features) and the channel's
    own class corrections."""

    k: int
    thresholds: tuple[int, ...]
    gram: np.ndarray  # (3, n + 9·(C−1), n + 9·(C−1))
    cross: np.ndarray  # (3, n + 9·(C−1))
    pixels: int


def class_normal_equations(original: np.ndarray, decoded: np.ndarray, k: int, thresholds: tuple[int, ...],
                           base: Normal | None = None) -> ClassNormal:
    """As :func:`normal_equations` for a k-filter with these activity classes (encoder only).
    Blocks instead of one big product: the class features are zero outside their class.
    ``base``, the plain filter's statistics (k ≤ base.k), saves recomputing the shared block."""
    h, w, _ = decoded.shape
    r, frame = k // 2, max(k // 2, ACTIVITY_RADIUS)
    padded = np.pad(decoded, ((frame, frame), (frame, frame), (0, 0)), mode="edge")
    n = 3 * (k * k - 1) + 4
    extra = len(thresholds)
    size = n + CLASS_TAPS * extra
    gram = np.zeros((3, size, size))
    cross = np.zeros((3, size))
    pixels = 0
    for top, bottom, left, right in _pieces(sample_bands(h, w), w):
        framed = padded[top : bottom + 2 * frame, left : right + 2 * frame]
        feats = _features(_inner(framed, frame, r), r, k)  # (n, m)
        target = original[top:bottom, left:right].reshape(-1, 3).T.astype(np.float64) - feats[n - 4 : n - 1]
        cls = pixel_classes(_inner(framed, frame, ACTIVITY_RADIUS), thresholds)
        if base is None:
            gram[:, :n, :n] += feats @ feats.T
            cross[:, :n] += (feats @ target.T).T
        band = np.ascontiguousarray(_inner(framed, frame, 1).transpose(2, 0, 1), dtype=np.float64)
        own = np.concatenate([_own_features(band[c], 1) for c in range(3)])  # (27, m): channel-major
        # Pixels grouped by class: each class's blocks are products over its own columns.
        order = np.argsort(cls, kind="stable")
        edges = np.searchsorted(cls[order], np.arange(1, extra + 2))
        for j in range(extra):
            cols = order[edges[j] : edges[j + 1]]  # class j + 1
            if cols.size == 0:
                continue
            x, o, t = feats[:, cols], own[:, cols], target[:, cols]
            xo = x @ o.T  # (n, 27)
            oo = o @ o.T
            ot = o @ t.T  # (27, 3)
            at = slice(n + CLASS_TAPS * j, n + CLASS_TAPS * (j + 1))
            for c in range(3):
                mine = slice(CLASS_TAPS * c, CLASS_TAPS * (c + 1))
                gram[c, :n, at] += xo[:, mine]
                gram[c, at, :n] += xo[:, mine].T
                gram[c, at, at] += oo[mine, mine]
                cross[c, at] += ot[mine, c]
        pixels += feats.shape[1]
    if base is not None:
        cols = _columns(base.k, k)
        gram[:, :n, :n] = base.gram[np.ix_(cols, cols)]
        cross[:, :n] = base.cross[cols].T
    return ClassNormal(k=k, thresholds=tuple(thresholds), gram=gram, cross=cross, pixels=pixels)


def merge_classes(normal: ClassNormal, keep: tuple[int, ...]) -> ClassNormal:
    """The statistics of a coarser split: only the thresholds at indexes ``keep``.  Class
    features are zero outside their class, so a merged class's statistics are sums of blocks
    (P·G·Pᵀ with P adding the fine blocks it covers), and one pass over the image serves
    every split of its thresholds."""
    k = normal.k
    n = 3 * (k * k - 1) + 4
    fine = len(normal.thresholds)
    keep = tuple(sorted(set(keep)))
    proj = np.zeros((n + CLASS_TAPS * len(keep), n + CLASS_TAPS * fine))
    proj[:n, :n] = np.eye(n)
    for f in range(1, fine + 1):  # fine class f (its block f − 1) goes to coarse class #kept below it
        coarse = sum(1 for i in keep if i < f)
        if coarse:
            proj[n + CLASS_TAPS * (coarse - 1) : n + CLASS_TAPS * coarse,
                 n + CLASS_TAPS * (f - 1) : n + CLASS_TAPS * f] = np.eye(CLASS_TAPS)
    gram = proj @ normal.gram @ proj.T  # (3, coarse, coarse)
    cross = normal.cross @ proj.T
    return ClassNormal(k=k, thresholds=tuple(normal.thresholds[i] for i in keep), gram=gram, cross=cross,
                       pixels=normal.pixels)


def fit_classes(normal: ClassNormal, frac_bits: int, ridge: float = 1e-4) -> LoopFilter:
    """The least-squares filter with activity classes from ``normal``, quantised to F bits."""
    k = normal.k
    n = 3 * (k * k - 1) + 4
    size = normal.gram.shape[1]
    reg = ridge * normal.pixels * np.eye(size)
    reg[n - 1, n - 1] = 0.0  # biases are not shrunk
    for j in range(len(normal.thresholds)):
        end = n + CLASS_TAPS * (j + 1) - 1
        reg[end, end] = 0.0
    wts = np.empty((3, size))
    for c in range(3):
        try:
            wts[c] = np.linalg.solve(normal.gram[c] + reg, normal.cross[c])
        except np.linalg.LinAlgError:
            wts[c] = np.linalg.lstsq(normal.gram[c] + reg, normal.cross[c], rcond=None)[0]
    limit = (1 << 24) - 1
    q = np.clip(np.rint(wts * (1 << frac_bits)), -limit, limit).astype(np.int64)  # (3, size)
    n_taps = n - 4
    class_taps = q[:, n:].reshape(3, len(normal.thresholds), CLASS_TAPS).transpose(1, 0, 2)
    return LoopFilter(k=k, frac_bits=frac_bits, taps=q[:, :n_taps], gains=q[:, n_taps : n_taps + 3],
                      bias=q[:, n_taps + 3], thresholds=normal.thresholds, class_taps=np.ascontiguousarray(class_taps))


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
    groups = [lf.taps.ravel(), lf.gains.ravel(), lf.bias.ravel()]
    return groups + ([lf.class_taps.ravel()] if lf.thresholds and lf.class_taps is not None else [])


def encode(lf: LoopFilter) -> bytes:
    """Section payload: k (u8, CLASS_FLAG set with classes), F (u8), three group scales (u16
    each); with classes C (u8), the thresholds (varint deltas) and the corrections' scale
    (u16); then per group its ANS words (varint length first)."""
    groups = _groups(lf)
    scales = [_scale_q(g) for g in groups]
    out = bytearray(struct.pack("<BBHHH", lf.k | (CLASS_FLAG if lf.thresholds else 0), lf.frac_bits, *scales[:3]))
    if lf.thresholds:
        out.append(lf.classes)
        previous = 0
        for t in lf.thresholds:
            out += write_varint(t - previous)
            previous = t
        out += struct.pack("<H", scales[3])
    for g, s in zip(groups, scales):
        words = _coder(s).encode(g.astype(np.int64), np.zeros(g.size, dtype=np.int64))
        out += write_varint(len(words)) + words
    return bytes(out)


def decode(payload: bytes, classes_allowed: bool = True) -> LoopFilter:
    """The section's filter; ``classes_allowed`` False for files older than format version 8."""
    reader = Reader(payload, len(payload))
    k_byte, frac_bits, *scales = struct.unpack("<BBHHH", reader.take(8, "loop filter"))
    k = k_byte & ~CLASS_FLAG
    has_classes = bool(k_byte & CLASS_FLAG)
    if k not in ALLOWED_TAPS or not MIN_FRAC_BITS <= frac_bits <= MAX_FRAC_BITS or (has_classes and not classes_allowed):
        raise ContainerError(f"corrupt loop filter section (k {k_byte}, F {frac_bits})")
    thresholds: list[int] = []
    if has_classes:
        count = reader.take(1, "loop filter")[0]
        if not 2 <= count <= MAX_CLASSES:
            raise ContainerError(f"corrupt loop filter section ({count} classes)")
        for _ in range(count - 1):
            step = reader.varint("loop filter threshold")
            thresholds.append((thresholds[-1] if thresholds else 0) + step)
            if step < 1 or thresholds[-1] >= MAX_THRESHOLD:
                raise ContainerError("corrupt loop filter section (thresholds)")
        scales.append(struct.unpack("<H", reader.take(2, "loop filter"))[0])
    if not all(1 <= s <= _MAX_SCALE_Q for s in scales):
        raise ContainerError("corrupt loop filter section (scale out of range)")
    sizes = [3 * 3 * (k * k - 1), 9, 3] + ([len(thresholds) * 3 * CLASS_TAPS] if has_classes else [])
    groups = []
    for size, s in zip(sizes, scales):
        words = reader.take(reader.varint("loop filter"), "loop filter")
        groups.append(_coder(s).decode(words, np.zeros(size, dtype=np.int64)))
    if reader.pos != len(payload):
        raise ContainerError("corrupt loop filter section (trailing bytes)")
    values = np.concatenate(groups)
    if ((values >= 1 << 24) | (values <= -(1 << 24))).any():
        raise ContainerError("corrupt loop filter section (coefficient out of range)")
    class_taps = groups[3].reshape(len(thresholds), 3, CLASS_TAPS) if has_classes else None
    return LoopFilter(k=k, frac_bits=frac_bits, taps=groups[0].reshape(3, -1), gains=groups[1].reshape(3, 3),
                      bias=groups[2], thresholds=tuple(thresholds), class_taps=class_taps)
