"""Interlaced scan, neighbourhoods, predictors and context activity.

The scan visits a plane coarse-to-fine so that every step codes many pixels at
once (numpy, no per-pixel loop) and predicts them by *interpolating* between
already-decoded neighbours.  Level ``s`` (s = S/2 … 1, S the smallest power of two
≥ max(H, W)) has three passes; before it, every pixel with y ≡ x ≡ 0 (mod 2s) is known:

* type 0 "H":  y ≡ 0, x ≡ s (mod 2s)  neighbours W E (±s) and NW NE SW SE at (∓2s, ±s)
* type 1 "V0": y ≡ s, x ≡ 0 (mod 2s)  neighbours N S NW NE SW SE (all at distance s)
* type 2 "V1": y ≡ s, x ≡ s (mod 2s)  neighbours N S W E NW NE SW SE (distance s)

A neighbour outside the image is mirrored (offset d → −d on that axis), and if that
is outside too the offset on that axis becomes 0; every such pixel is already known.
Pixel (0, 0) is pass "DC" with no neighbours.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

# (dy, dx) in units of s, in the order the format lists them.
OFFSETS: dict[int, tuple[tuple[int, int], ...]] = {
    0: ((0, -1), (0, 1), (-2, -1), (-2, 1), (2, -1), (2, 1)),
    1: ((-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)),
    2: ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)),
    3: (),
}
DC = 3
NUM_GROUPS = 7
FRACTION_BITS = 10  # fixed-point precision of least-squares weights
WEIGHT_LIMIT = 1 << 15

PRED_AVERAGE = 0
PRED_LINEAR = 1
PRED_CLAMPED = 2  # linear, clamped to the range of the direction neighbours (no overshoot at edges)
PRED_COPY = 3  # PRED_COPY + i: copy neighbour i
DIRECTION_NEIGHBOURS = {0: 2, 1: 2, 2: 4, 3: 0}  # the first this many neighbours are the direction ones


@dataclass(frozen=True)
class Pass:
    kind: int  # 0 H, 1 V0, 2 V1, 3 DC
    step: int  # s
    ys: np.ndarray
    xs: np.ndarray

    @property
    def count(self) -> int:
        return self.ys.size * self.xs.size

    @property
    def group(self) -> int:
        """Context group: the two finest levels by pass type, everything coarser together."""
        if self.kind == DC or self.step >= 4:
            return 6
        return self.kind + (0 if self.step == 1 else 3)


def pass_list(height: int, width: int) -> list[Pass]:
    passes = [Pass(DC, 0, np.zeros(1, np.int64), np.zeros(1, np.int64))]
    top = 1
    while top < max(height, width):
        top *= 2
    s = top // 2
    while s >= 1:
        for kind, (y0, x0) in enumerate(((0, s), (s, 0), (s, s))):
            ys = np.arange(y0, height, 2 * s, dtype=np.int64)
            xs = np.arange(x0, width, 2 * s, dtype=np.int64)
            if ys.size and xs.size:
                passes.append(Pass(kind, s, ys, xs))
        s //= 2
    return passes


def _axis(coords: np.ndarray, offset: int, size: int) -> np.ndarray:
    fwd = coords + offset
    back = coords - offset
    return np.where((fwd >= 0) & (fwd < size), fwd, np.where((back >= 0) & (back < size), back, coords))


@functools.lru_cache(maxsize=512)
def _gather_plan(kind: int, step: int, height: int, width: int) -> tuple:
    """Per neighbour offset of a pass: the interior block (target and strided source slices) and
    the mirrored border rows/columns.  Depends only on the pass geometry, so it is computed once
    for all planes, the offset map, the encoder and the decoder."""
    y0, x0 = ((0, step), (step, 0), (step, step))[kind]
    ys = np.arange(y0, height, 2 * step, dtype=np.int64)
    xs = np.arange(x0, width, 2 * step, dtype=np.int64)
    two_s = 2 * step
    plan = []
    for dy, dx in OFFSETS[kind]:
        oy, ox = dy * step, dx * step
        ry = _axis(ys, oy, height)
        rx = _axis(xs, ox, width)
        good_y = np.flatnonzero(ry == ys + oy)
        good_x = np.flatnonzero(rx == xs + ox)
        interior = None
        if good_y.size and good_x.size:
            a0, a1 = int(good_y[0]), int(good_y[-1]) + 1
            b0, b1 = int(good_x[0]), int(good_x[-1]) + 1
            interior = ((slice(a0, a1), slice(b0, b1)),
                        (slice(int(ry[a0]), int(ry[a1 - 1]) + 1, two_s), slice(int(rx[b0]), int(rx[b1 - 1]) + 1, two_s)))
        else:
            a0 = a1 = b0 = b1 = 0
        rows = np.arange(ys.size)
        cols = np.arange(xs.size)
        border_rows = rows[(rows < a0) | (rows >= a1)]
        border_cols = cols[(cols < b0) | (cols >= b1)]
        plan.append((interior, ry, rx, border_rows, border_cols))
    return tuple(plan)


def gather(planes: np.ndarray, p: Pass) -> np.ndarray:
    """(C, k, n) neighbour values of every plane, OFFSETS order, row-major over the pass grid.

    Strided slices for the interior and fancy indexing only for mirrored border rows/columns
    (an order of magnitude faster than gathering every pixel through an index array).
    """
    chans, height, width = planes.shape
    offsets = OFFSETS[p.kind]
    ny, nx = p.ys.size, p.xs.size
    out = np.empty((chans, len(offsets), ny, nx), dtype=planes.dtype)
    if p.kind == DC:
        return out.reshape(chans, 0, ny * nx)
    for i, (interior, ry, rx, border_rows, border_cols) in enumerate(_gather_plan(p.kind, p.step, height, width)):
        if interior is not None:
            (ta, tb), (sa, sb) = interior
            out[:, i, ta, tb] = planes[:, sa, sb]
        if border_rows.size:
            out[:, i][:, border_rows, :] = planes[:, ry[border_rows]][:, :, rx]
        if border_cols.size:
            out[:, i][:, :, border_cols] = planes[:, ry][:, :, rx[border_cols]]
    return out.reshape(chans, len(offsets), ny * nx)


def grid(p: Pass) -> tuple[slice, slice]:
    """The pass's pixels as a 2-D slice (rows, columns)."""
    if p.kind == DC:
        return slice(0, 1), slice(0, 1)
    return slice(int(p.ys[0]), None, 2 * p.step), slice(int(p.xs[0]), None, 2 * p.step)


def average(kind: int, nb: list[np.ndarray], mid: int, count: int) -> np.ndarray:
    if kind == 0:
        return (nb[0] + nb[1]) >> 1
    if kind == 1:
        return (nb[0] + nb[1]) >> 1
    if kind == 2:
        return (nb[0] + nb[1] + nb[2] + nb[3] + 2) >> 2
    return np.full(count, mid, dtype=np.int32)


def activity(kind: int, nb: list[np.ndarray], count: int) -> np.ndarray:
    """Local variation from known neighbours (≥ 0); its quantile bins select the context."""
    if kind == 0:
        return 2 * np.abs(nb[0] - nb[1]) + np.abs(nb[2] - nb[3]) + np.abs(nb[4] - nb[5])
    if kind == 1:
        return 2 * np.abs(nb[0] - nb[1]) + np.abs(nb[2] - nb[4]) + np.abs(nb[3] - nb[5])
    if kind == 2:
        return np.abs(nb[0] - nb[1]) + np.abs(nb[2] - nb[3]) + np.abs(nb[4] - nb[7]) + np.abs(nb[5] - nb[6])
    return np.zeros(count, dtype=np.int32)


TEXTURE_CLASSES = 9  # version 8: each activity bin of a sample plane splits this many ways


def texture_context(kind: int, nb: list[np.ndarray], pred: np.ndarray) -> np.ndarray:
    """Version 8's texture class (0 … 8) of each pixel: how many direction neighbours equal the
    prediction (0, 1, 2+) and on which side of it the others lie (the sign of the sum of their
    signs).  The residual's spread and sign differ between these classes at equal activity
    (flat where the neighbours equal the prediction, skewed where they lie on one side of it):
    splitting the contexts by them saves 2.3 % of a photo's lossless bytes (6 Kodak images)."""
    equal = np.zeros(pred.size, dtype=np.int32)
    balance = np.zeros(pred.size, dtype=np.int32)
    for d in nb[: DIRECTION_NEIGHBOURS[kind]]:
        equal += d == pred
        balance += np.sign(d - pred).astype(np.int32, copy=False)
    return 3 * np.minimum(equal, 2) + np.sign(balance) + 1


def palette_activity(kind: int, nb: list[np.ndarray], count: int) -> np.ndarray:
    """For index planes: how many neighbour pairs differ (gradients mean nothing there)."""
    if kind == DC:
        return np.zeros(count, dtype=np.int32)
    a = np.zeros(count, dtype=np.int32)
    for i in range(len(nb)):
        for j in range(i + 1, len(nb)):
            a += nb[i] != nb[j]
    return a


def linear(features: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Σ w_i f_i in fixed point, rounded: (Σ w_i f_i + 2^(F-1)) >> F (floor shift)."""
    bound = (1 << (FRACTION_BITS - 1)) + sum(abs(int(w)) for w in weights.tolist()) * max(
        (max(abs(int(f.max(initial=0))), abs(int(f.min(initial=0)))) for f in features), default=0
    )
    dtype = np.int32 if bound < 1 << 31 else np.int64  # same integers either way; int32 is faster
    acc = np.einsum("k,kn->n", weights.astype(dtype), np.stack(features).astype(dtype, copy=False))
    return ((acc + dtype(1 << (FRACTION_BITS - 1))) >> FRACTION_BITS).astype(np.int32, copy=False)


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float] | None:
    """x with matrix · x = rhs (k × k, k ≤ ~16) by Gaussian elimination with partial pivoting, in
    Python floats: no LAPACK (its OpenBLAS threads spun on a second core after every call), and
    the same IEEE operations in the same order on every machine.  None if singular."""
    n = len(rhs)
    a = [list(row) + [b] for row, b in zip(matrix, rhs)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if a[pivot][col] == 0.0:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        top = a[col]
        for r in range(col + 1, n):
            row = a[r]
            f = row[col] / top[col]
            if f != 0.0:
                for c in range(col, n + 1):
                    row[c] -= f * top[c]
    x = [0.0] * n
    for i in reversed(range(n)):
        acc = a[i][n]
        for j in range(i + 1, n):
            acc -= a[i][j] * x[j]
        x[i] = acc / a[i][i]
    return x


def fit_linear(features: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    """Least-squares weights (encoder only), rounded to fixed point and clamped.

    The sums of products are exact in float64 (samples of ≤ 17 bits, < 2^16 rows: every partial
    sum is an integer under 2^51), so BLAS gives the same numbers in any order on any machine; the
    small system is solved in Python floats (``_solve``), not by LAPACK, whose OpenBLAS threads
    spun on the core a parallel encode (``workers``) wanted: a pixel-art sheet took 1.26
    CPU-seconds for a 0.66 s encode, 0.60 without them."""
    n = target.size
    stride = max(1, n // 32768)
    x = np.stack([f[::stride] for f in features], axis=1).astype(np.float64)
    y = target[::stride].astype(np.float64)
    gram = x.T @ x
    k = gram.shape[0]
    ridge = 1e-6 * (float(np.trace(gram)) / max(1, k)) + 1e-9
    wts = _solve((gram + ridge * np.eye(k)).tolist(), (x.T @ y).tolist())
    wts = np.zeros(k) if wts is None else np.array(wts)
    if not np.all(np.isfinite(wts)):
        wts = np.zeros(k)
    q = np.round(wts * (1 << FRACTION_BITS))
    return np.clip(q, -WEIGHT_LIMIT, WEIGHT_LIMIT - 1).astype(np.int64)


def num_predictors(kind: int) -> int:
    return PRED_COPY + len(OFFSETS[kind])


def predict(pred: int, kind: int, nb: list[np.ndarray], inter: list[np.ndarray], weights: np.ndarray | None,
            mid: int, count: int) -> np.ndarray:
    if pred == PRED_AVERAGE:
        return average(kind, nb, mid, count)
    if pred in (PRED_LINEAR, PRED_CLAMPED):
        assert weights is not None
        value = linear(nb + inter, weights)
        if pred == PRED_CLAMPED:
            direction = nb[: DIRECTION_NEIGHBOURS[kind]]
            value = np.minimum(np.maximum(value, np.minimum.reduce(direction)), np.maximum.reduce(direction))
        return value
    return nb[pred - PRED_COPY]


LITERAL_BASE = 8  # index-plane symbols ≥ this are literal palette indices (+ LITERAL_BASE)


def distinct_ranks(nb: list[np.ndarray], count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For index planes: per neighbour j, whether its value is new among neighbours 0..j-1,
    and its rank among the distinct values so far (both per pixel)."""
    is_new, ranks = [], []
    rank = np.zeros(count, dtype=np.int32)
    for j, v in enumerate(nb):
        new = np.ones(count, dtype=bool)
        for i in range(j):
            new &= v != nb[i]
        is_new.append(new)
        ranks.append(rank.copy())
        rank += new
    return is_new, ranks


def index_symbols(x: np.ndarray, nb: list[np.ndarray]) -> np.ndarray:
    """Index → symbol: rank of the first distinct neighbour equal to it, else LITERAL_BASE + index."""
    out = x.astype(np.int64) + LITERAL_BASE
    if not nb:
        return out
    is_new, ranks = distinct_ranks(nb, x.size)
    found = np.zeros(x.size, dtype=bool)
    for j in range(len(nb)):
        hit = is_new[j] & (nb[j] == x) & ~found
        out[hit] = ranks[j][hit]
        found |= hit
    return out


def index_values(sym: np.ndarray, nb: list[np.ndarray], palette_size: int) -> np.ndarray:
    """Inverse of ``index_symbols``; impossible symbols (damaged data) map to valid indices."""
    out = np.minimum(np.maximum(sym - LITERAL_BASE, 0), palette_size - 1).astype(np.int32)
    if not nb:
        return out
    is_new, ranks = distinct_ranks(nb, sym.size)
    for j in range(len(nb)):
        hit = is_new[j] & (ranks[j] == sym)
        out[hit] = nb[j][hit]
    return out


MATCH_NONE = 8  # match symbol: the pixel equals no neighbour pixel (its planes are coded)
MATCH_HINT = 9  # match symbol: copy the pixel at the offset a direction neighbour was copied with
MATCH_OFFSET = 10  # match symbols MATCH_OFFSET + k: copy the pixel at the image's k-th copy offset
MAX_OFFSETS = 8


_DISTINCT_CACHE = threading.local()  # .last = (nb_all, result) of this thread's last call: every pass asks twice


_KEYS_CACHE = threading.local()  # .last = (nb_all, keys): a pass asks for its neighbours' keys more than once


def releasing_pixel_caches(func):  # noqa: ANN001, ANN201 - a decorator
    """Drops this thread's cached neighbour keys and ranks when ``func`` returns: they are ~50 bytes a
    pixel, and a worker thread would otherwise hold the last image's until it codes another."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return func(*args, **kwargs)
        finally:
            _DISTINCT_CACHE.__dict__.pop("last", None)
            _KEYS_CACHE.__dict__.pop("last", None)

    return wrapper


def _pixel_keys(nb_all: np.ndarray) -> np.ndarray | None:
    """(k, n) int64 keys equal exactly when the neighbour pixels are equal (None if they don't fit)."""
    last = getattr(_KEYS_CACHE, "last", None)
    if last is not None and last[0] is nb_all:
        return last[1]
    keys = _compute_keys(nb_all)
    _KEYS_CACHE.last = (nb_all, keys)
    return keys


def set_pixel_keys(nb_all: np.ndarray, keys: np.ndarray) -> None:
    """Hands ``_pixel_keys`` the keys of ``nb_all`` made elsewhere (any keys that are equal exactly
    when the neighbour pixels are: only equality is used)."""
    _KEYS_CACHE.last = (nb_all, keys)


def _compute_keys(nb_all: np.ndarray) -> np.ndarray | None:
    planes = nb_all.shape[0]
    if planes == 1:
        return nb_all[0].astype(np.int64)
    top = max(int(nb_all.max(initial=0)), -int(nb_all.min(initial=0)))
    bits = top.bit_length() + 1
    if bits * planes > 62:
        return None
    keys = np.zeros(nb_all.shape[1:], dtype=np.int64)
    for c in range(planes):
        keys = (keys << bits) | (nb_all[c].astype(np.int64) + top)
    return keys


def _distinct_pixels(nb_all: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per neighbour j: is the whole pixel (all planes) new among neighbours 0..j-1, and its rank."""
    last = getattr(_DISTINCT_CACHE, "last", None)
    if last is not None and last[0] is nb_all:
        return last[1]
    _, k, n = nb_all.shape
    keys = _pixel_keys(nb_all)
    is_new, ranks = [], []
    rank = np.zeros(n, dtype=np.int32)
    for j in range(k):
        new = np.ones(n, dtype=bool)
        for i in range(j):
            if keys is not None:
                new &= keys[j] != keys[i]
            else:
                new &= np.any(nb_all[:, j] != nb_all[:, i], axis=0)
        is_new.append(new)
        ranks.append(rank.copy())
        rank += new
    _DISTINCT_CACHE.last = (nb_all, (is_new, ranks))
    return is_new, ranks


def first_neighbour_support(nb_all: np.ndarray) -> np.ndarray:
    """How many other neighbour pixels equal neighbour 0 (the rank-0 candidate)."""
    _, k, n = nb_all.shape
    support = np.zeros(n, dtype=np.int32)
    keys = _pixel_keys(nb_all)
    for j in range(1, k):
        if keys is not None:
            support += keys[j] == keys[0]
        else:
            support += np.all(nb_all[:, j] == nb_all[:, 0], axis=0)
    return support


def match_activity(nb_all: np.ndarray) -> np.ndarray:
    """Context of the match symbol: number of distinct neighbour pixels − 1 (0 for DC)."""
    _, k, n = nb_all.shape
    if k == 0:
        return np.zeros(n, dtype=np.int32)
    is_new, ranks = _distinct_pixels(nb_all)
    return ranks[-1] + is_new[-1] - 1


def pixel_match(x_all: np.ndarray, nb_all: np.ndarray, tolerance: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(symbol, matched, values): rank of the first distinct neighbour pixel within ±tolerance
    on every plane (MATCH_NONE if none), and the reconstruction it implies."""
    _, k, n = nb_all.shape
    sym = np.full(n, MATCH_NONE, dtype=np.int64)
    found = np.zeros(n, dtype=bool)
    values = x_all.copy()
    if k == 0:
        return sym, found, values
    is_new, ranks = _distinct_pixels(nb_all)
    for j in range(k):
        close = np.all(np.abs(nb_all[:, j] - x_all) <= tolerance[:, None], axis=0)
        hit = is_new[j] & close & ~found
        sym[hit] = ranks[j][hit]
        values[:, hit] = nb_all[:, j][:, hit]
        found |= hit
    return sym, found, values


def match_values(sym: np.ndarray, nb_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decoder side of ``pixel_match``: (matched, values of the matched neighbour pixel)."""
    c, k, n = nb_all.shape
    matched = np.zeros(n, dtype=bool)
    values = np.zeros((c, n), dtype=nb_all.dtype)
    if k == 0:
        return matched, values
    is_new, ranks = _distinct_pixels(nb_all)
    # A symbol names at most one neighbour (the new ones have ranks 0, 1, 2, … in order): find
    # each pixel's, then gather every plane at once (a masked copy per neighbour cost ~1 ms a pass).
    choice = np.zeros(n, dtype=np.intp)
    for j in range(k):
        hit = is_new[j] & (ranks[j] == sym)
        choice[hit] = j
        matched |= hit
    gathered = np.take_along_axis(nb_all, choice[None, None, :], axis=1)[:, 0, :]
    np.copyto(values, gathered, where=matched[None, :])
    return matched, values


def offset_sources(p: Pass, at: np.ndarray, off_id: np.ndarray, offsets: np.ndarray, height: int,
                   width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the pass pixels ``at`` (pass-order indices) and their offset ids: the source row,
    column (0 where outside) and whether the source lies inside the image."""
    sy = p.ys[at // p.xs.size] - offsets[off_id, 0]
    sx = p.xs[at % p.xs.size] - offsets[off_id, 1]
    inside = (sy >= 0) & (sy < height) & (sx >= 0) & (sx < width)
    return np.where(inside, sy, 0), np.where(inside, sx, 0), inside


def in_pass(p: Pass, sy: np.ndarray, sx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whether (sy, sx) is a pixel of pass p, its pass-order index where it is)."""
    if p.kind == DC:
        return (sy == 0) & (sx == 0), np.zeros(sy.shape, dtype=np.int64)
    two_s = 2 * p.step
    ry, rx = sy - int(p.ys[0]), sx - int(p.xs[0])
    ok = (ry >= 0) & (rx >= 0) & (ry % two_s == 0) & (rx % two_s == 0)
    return ok, np.where(ok, (ry // two_s) * p.xs.size + rx // two_s, 0)


def offset_hint(idmap: np.ndarray, p: Pass) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of the pass: the copy offset of the first direction neighbour that has one (else
    −1), and how many direction neighbours have that same offset."""
    nb = gather(idmap[None], p)[0]
    hint = np.full(p.count, -1, dtype=np.int32)
    dirs = DIRECTION_NEIGHBOURS[p.kind]
    for j in reversed(range(dirs)):
        hint = np.where(nb[j] >= 0, nb[j], hint)
    agree = np.zeros(p.count, dtype=np.int32)
    for j in range(dirs):
        agree += (nb[j] == hint) & (hint >= 0)
    return hint, agree


def verified_ids(recon: np.ndarray, decoded: np.ndarray, p: Pass, values: np.ndarray, hint: np.ndarray,
                 off_id: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Offset map entries of the pass (after it is decoded): the hinted offset where the pixel
    equals the pixel there, else the offset it was copied with, else −1."""
    height, width = decoded.shape
    ids = off_id.copy()
    at = np.flatnonzero(hint >= 0)
    if at.size:
        sy, sx, inside = offset_sources(p, at, hint[at], offsets, height, width)
        ok = inside & decoded[sy, sx] & np.all(recon[:, sy, sx] == values[:, at], axis=0)
        ids[at[ok]] = hint[at[ok]]
    return ids


def offset_ids(sym: np.ndarray, hint: np.ndarray, count: int) -> np.ndarray:
    """Copy offset of each pixel from its match symbol (−1: not a copy)."""
    off = np.where((sym >= MATCH_OFFSET) & (sym < MATCH_OFFSET + count), sym - MATCH_OFFSET, -1)
    return np.where(sym == MATCH_HINT, hint, off).astype(np.int32)


def resolve_copies(values: np.ndarray, recon: np.ndarray, decoded: np.ndarray, p: Pass, off_id: np.ndarray,
                   offsets: np.ndarray) -> np.ndarray | None:
    """Pass values (C, n) with offset copies filled in; None when a copy's source is not decoded.

    A source decoded in an earlier pass is read from ``recon``; one in this pass points at
    that pixel, and the pointers (always to an earlier pixel of the pass) are followed to
    their ends by pointer doubling, so a chain costs log2(length) vector steps.
    """
    height, width = decoded.shape
    n = values.shape[1]
    at = np.flatnonzero(off_id >= 0)
    if at.size == 0:
        return values
    sy, sx, inside = offset_sources(p, at, off_id[at], offsets, height, width)
    same, index = in_pass(p, sy, sx)
    earlier = inside & ~same & decoded[sy, sx]
    if not np.all(inside & (same | earlier)):
        return None
    out = values.copy()
    out[:, at[earlier]] = recon[:, sy[earlier], sx[earlier]]
    if same.any():
        ptr = np.arange(n)
        ptr[at[same]] = index[same]
        while True:
            nxt = ptr[ptr]
            if np.array_equal(nxt, ptr):
                break
            ptr = nxt
        out = out[:, ptr]
    return out
