"""Raster scan for palette images (mode 3: palette raster).

Rows are coded top to bottom.  Every pixel of a row gets one symbol: repeat the pixel
to the left, repeat one of the distinct pixels above (N, NE, NW, NN), copy the pixel at
one of the image's copy offsets, or name a palette index (a *literal*).  A symbol's
context comes only from rows already decoded (the symbol and pixels above), so a whole
row is decoded at once: its symbols in bulk, then its literals, then the left/same-row
copies resolved by pointer doubling.  This codes runs and repeated rows the way an
LZ77 coder does (one cheap symbol per pixel of a run, no per-pass edge cost).
"""

from __future__ import annotations

import numpy as np

from ..errors import ContainerError
from .adaptive import AdaptiveModel

SYM_LEFT = 0
ABOVE = ((1, 0), (1, -1), (1, 1), (2, 0))  # (dy, dx) back: N, NE, NW, NN
SYM_ABOVE = 1  # SYM_ABOVE + r: the r-th distinct pixel above
SYM_OFFSET = SYM_ABOVE + len(ABOVE)  # SYM_OFFSET + k: copy offset k; SYM_OFFSET + K: literal
PATTERNS = 8  # context bits: N = NW, N = NE, N = NN


def alphabet(offsets: int) -> int:
    return SYM_OFFSET + offsets + 1


def _above(prev1: np.ndarray, prev2: np.ndarray, has1: np.ndarray, has2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidates above for rows whose previous rows are ``prev1`` (y − 1) and ``prev2`` (y − 2),
    shape (R, W); ``has1``/``has2`` (R, 1) say whether those rows exist.  Returns values and
    existence, shape (4, R, W), in ABOVE order."""
    width = prev1.shape[-1]
    x = np.arange(width)
    ne = np.concatenate([prev1[:, 1:], prev1[:, -1:]], axis=1)
    nw = np.concatenate([prev1[:, :1], prev1[:, :-1]], axis=1)
    vals = np.stack([prev1, ne, nw, prev2])
    ok = np.stack(np.broadcast_arrays(has1, has1 & (x < width - 1), has1 & (x >= 1), has2))
    return vals, ok


def _ranks(vals: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate: whether it exists and differs from every earlier existing one; its rank."""
    new = ok.copy()
    for j in range(1, vals.shape[0]):
        for i in range(j):
            new[j] &= ~(ok[i] & (vals[i] == vals[j]))
    ranks = np.cumsum(new, axis=0) - new
    return new, ranks


def _context(vals: np.ndarray, ok: np.ndarray, above_sym: np.ndarray, none: int) -> np.ndarray:
    """Context bin: (symbol above, or ``none`` on row 0) · PATTERNS + equality bits."""
    n, ne, nw, nn = vals
    bits = (ok[2] & (n == nw)).astype(np.int64) + 2 * (ok[1] & (n == ne)) + 4 * (ok[3] & (n == nn))
    bits = np.where(ok[0], bits, 0)
    cls = np.where(ok[0], above_sym, none)
    return cls * PATTERNS + bits


# Phases of a row, decoded one after the other: (first column, column step, distance of the
# same-row neighbours whose symbols are context: 0 = none).
PHASES = ((0, 2, 0), (1, 2, 1))


def _models(offsets: int, palette_size: int) -> tuple[list[AdaptiveModel], AdaptiveModel]:
    size = alphabet(offsets)
    classes = size + 1
    first = AdaptiveModel(1, classes * PATTERNS, size, np.arange(classes * PATTERNS) // PATTERNS)
    later = [AdaptiveModel(1, classes * classes * PATTERNS, size, np.arange(classes * classes * PATTERNS) // PATTERNS)
             for _ in PHASES[1:]]
    return [first] + later, AdaptiveModel(1, 1, palette_size)


def _phase_context(base: np.ndarray, sym: np.ndarray, cols: np.ndarray, dist: int, none: int) -> np.ndarray:
    """Context bins of one phase's columns ``cols`` of a row: the base context (symbol above ·
    PATTERNS + pattern) for the first phase, else (symbol dist left, symbol dist right or ``none``)
    · PATTERNS + pattern.  ``sym``: the row's symbols (earlier phases filled in)."""
    if dist == 0:
        return base[cols]
    width = sym.shape[0]
    right = cols + dist
    east = np.where(right < width, sym[np.minimum(right, width - 1)], none)
    return (sym[cols - dist] * (none + 1) + east) * PATTERNS + base[cols] % PATTERNS


def encode_raster(index: np.ndarray, palette_size: int, offsets: list[tuple[int, int]], ops) -> None:
    """Appends the symbols of the index plane (H, W) to ``ops`` in decode order."""
    idx, sym, ctx = symbols(index, offsets)
    literal = SYM_OFFSET + len(offsets)
    none = alphabet(len(offsets))
    models, lit_model = _models(len(offsets), palette_size)
    width = idx.shape[1]
    for y in range(idx.shape[0]):
        for (start, step, dist), model in zip(PHASES, models):
            cols = np.arange(start, width, step)
            model.encode(ops, 0, _phase_context(ctx[y], sym[y], cols, dist, none), sym[y, cols])
        lits = idx[y][sym[y] == literal]
        lit_model.encode(ops, 0, np.zeros(lits.size, np.int64), lits)


def symbols(index: np.ndarray, offsets: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoder: (index as int64, symbol per pixel, context bin per pixel)."""
    height, width = index.shape
    idx = index.astype(np.int64)
    literal = SYM_OFFSET + len(offsets)
    prev1 = np.concatenate([idx[:1], idx[:-1]], axis=0)
    prev2 = np.concatenate([idx[:2], idx[:-2]], axis=0)[:height]
    rows = np.arange(height)[:, None]
    vals, ok = _above(prev1, prev2, rows >= 1, rows >= 2)
    new, ranks = _ranks(vals, ok)
    x = np.arange(width)
    sym = np.full((height, width), literal, dtype=np.int64)
    found = np.zeros((height, width), dtype=bool)
    left = np.zeros((height, width), dtype=bool)
    left[:, 1:] = idx[:, 1:] == idx[:, :-1]
    sym[left] = SYM_LEFT
    found |= left
    for j in range(len(ABOVE)):
        hit = ~found & new[j] & (vals[j] == idx)
        sym[hit] = SYM_ABOVE + ranks[j][hit]
        found |= hit
    for k, (dy, dx) in enumerate(offsets):
        sy = rows - dy
        sx = x[None, :] - dx
        inside = (sy >= 0) & (sx >= 0) & (sx < width)
        src = idx[np.clip(sy, 0, height - 1), np.clip(sx, 0, width - 1)]
        hit = ~found & inside & (src == idx)
        sym[hit] = SYM_OFFSET + k
        found |= hit
    above_sym = np.concatenate([sym[:1], sym[:-1]], axis=0)
    return idx, sym, _context(vals, ok, above_sym, alphabet(len(offsets)))


def decode_raster(dec, height: int, width: int, palette_size: int, offsets: list[tuple[int, int]]) -> np.ndarray:
    idx = np.zeros((height, width), dtype=np.int64)
    sym_prev = np.zeros(width, dtype=np.int64)
    literal = SYM_OFFSET + len(offsets)
    models, lit_model = _models(len(offsets), palette_size)
    none = alphabet(len(offsets))
    x = np.arange(width)
    true = np.ones((1, 1), dtype=bool)
    false = np.zeros((1, 1), dtype=bool)
    for y in range(height):
        prev1 = idx[max(y - 1, 0)][None]
        prev2 = idx[max(y - 2, 0)][None]
        vals, ok = _above(prev1, prev2, true if y >= 1 else false, true if y >= 2 else false)
        new, ranks = _ranks(vals, ok)
        vals, ok, new, ranks = vals[:, 0], ok[:, 0], new[:, 0], ranks[:, 0]
        ctx = _context(vals, ok, sym_prev, none)
        sym = np.zeros(width, dtype=np.int64)
        for (start, step, dist), model in zip(PHASES, models):
            cols = np.arange(start, width, step)
            sym[cols] = model.decode(dec, 0, _phase_context(ctx, sym, cols, dist, none))
        value = np.full(width, -1, dtype=np.int64)
        ptr = np.arange(width)
        is_left = sym == SYM_LEFT
        if is_left[0]:
            raise ContainerError("lossless payload: the first pixel of a row repeats its left neighbour")
        ptr[is_left] = x[is_left] - 1
        for j in range(len(ABOVE)):
            hit = new[j] & (sym == SYM_ABOVE + ranks[j])
            value[hit] = vals[j][hit]
        for k, (dy, dx) in enumerate(offsets):
            at = np.flatnonzero(sym == SYM_OFFSET + k)
            if at.size == 0:
                continue
            sx = at - dx
            if y < dy or sx.min() < 0 or sx.max() >= width:
                raise ContainerError("lossless payload: a copy offset points outside the image")
            if dy:
                value[at] = idx[y - dy, sx]
            else:
                ptr[at] = sx
        lit_at = np.flatnonzero(sym == literal)
        if lit_at.size:
            lits = lit_model.decode(dec, 0, np.zeros(lit_at.size, np.int64))
            if lits.max() >= palette_size:
                raise ContainerError("lossless payload: palette index out of range")
            value[lit_at] = lits
        while True:
            nxt = ptr[ptr]
            if np.array_equal(nxt, ptr):
                break
            ptr = nxt
        value = value[ptr]
        if value.min() < 0:
            raise ContainerError("lossless payload: a pixel names a neighbour that does not exist")
        idx[y] = value
        sym_prev = sym
    return idx.astype(np.int32)
