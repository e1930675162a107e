"""Palette colours coded in the context of the index plane (payload version ≥ 10, palette coding 2).

Why: on screenshots and vector art with hundreds or thousands of colours (anti-aliased text over
gradients, icons) the palette was a fifth to three fifths of the payload, coded as a 1 × P image
whose only neighbours are the colours before it in the list: ~21–24 bits a colour.  The raster
scan's index plane does not need the colours, so the decoder decodes it first; then every colour
has *image* neighbours: at its first use (raster order) the pixels to the left, above and above
left already have colours that were used earlier.  Each colour is coded as its residual from the
median edge predictor of those neighbours, G first and R − G, B − G after it, in contexts of
how many distinct colours the neighbours have (measured: 7 % under the nested coding on the
20 screenshots, more on large palettes).

Decoding: the residuals of a plane are decoded in bulk (their contexts depend on the index plane
only); the colours then follow in order of first use, one short integer step each.
"""

from __future__ import annotations

import numpy as np

from ..errors import ContainerError
from . import coding
from .adaptive import AdaptiveModel
from .coding import Decoder, OpList

TOKEN_CAP = 7  # the later planes' contexts: distinct neighbours × min(first plane's token, TOKEN_CAP)
NEIGHBOURS = 4  # distinct-neighbour counts 0 … 3


def _order(index: np.ndarray, palette_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The colours in order of first use in raster order (colours the plane never uses last, in
    index order), and per colour in that order its first raster position (−1: unused)."""
    flat = index.reshape(-1)
    first = np.full(palette_size, -1, dtype=np.int64)
    values, at = np.unique(flat, return_index=True)
    first[values] = at
    used = first >= 0
    order = np.concatenate([np.flatnonzero(used)[np.argsort(first[used], kind="stable")], np.flatnonzero(~used)])
    return order, first[order]


def _neighbours(index: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per first position: the colours (indices) to the left, above and above left, −1 where the
    pixel does not exist (or the colour is unused)."""
    h, w = index.shape
    y, x = np.divmod(np.maximum(positions, 0), w)
    exists = positions >= 0
    west = np.where(exists & (x > 0), index[y, np.maximum(x - 1, 0)], -1)
    north = np.where(exists & (y > 0), index[np.maximum(y - 1, 0), x], -1)
    north_west = np.where(exists & (x > 0) & (y > 0), index[np.maximum(y - 1, 0), np.maximum(x - 1, 0)], -1)
    return west.astype(np.int64), north.astype(np.int64), north_west.astype(np.int64)


def _distinct(west: np.ndarray, north: np.ndarray, north_west: np.ndarray) -> np.ndarray:
    """How many distinct existing colours the three neighbours have (0 … 3)."""
    count = (west >= 0).astype(np.int64)
    count += (north >= 0) & (north != west)
    count += (north_west >= 0) & (north_west != west) & (north_west != north)
    return count


def _planes(residuals: np.ndarray, colour: bool) -> list[np.ndarray]:
    """Residual columns as coded planes: G, R − G, B − G (then alpha) for colour palettes."""
    if not colour:
        return [residuals[:, c] for c in range(residuals.shape[1])]
    g = residuals[:, 1]
    return [g, residuals[:, 0] - g, residuals[:, 2] - g] + [residuals[:, c] for c in range(3, residuals.shape[1])]


def _alphabet(maxval: int) -> int:
    return int(coding.tokenize(np.array([4 * maxval]))[0][0]) + 1  # zigzag of ±2·maxval


def _ranks_of(order: np.ndarray, palette_size: int) -> np.ndarray:
    rank = np.full(palette_size + 1, -1, dtype=np.int64)  # rank[−1] (no neighbour) stays −1
    rank[order] = np.arange(order.size)
    return rank


def _plane_model(distinct: np.ndarray, first: np.ndarray | None, alphabet: int) -> tuple[AdaptiveModel, np.ndarray]:
    """A plane's model and bins (§3b): the first plane by distinct-neighbour count; every later one
    also by the token of the colour's first-plane value (``first``, zigzagged), capped at TOKEN_CAP."""
    if first is None:
        return AdaptiveModel(1, NEIGHBOURS, alphabet), distinct
    tokens = np.minimum(coding.tokenize(first)[0].astype(np.int64), TOKEN_CAP)
    return AdaptiveModel(1, NEIGHBOURS * (TOKEN_CAP + 1), alphabet), distinct * (TOKEN_CAP + 1) + tokens


def encode(palette: np.ndarray, index: np.ndarray, bit_depth: int) -> bytes:
    """The palette (P × C samples) as an entropy-coded stream given the index plane."""
    size, channels = palette.shape
    colour = channels >= 3
    order, positions = _order(index, size)
    west, north, north_west = _neighbours(index, positions)
    rank = _ranks_of(order, size)
    values = palette[order].astype(np.int64)
    padded = np.vstack([values, np.zeros((1, channels), np.int64)])  # rank −1 → zeros (unused)
    rw, rn, rnw = rank[west], rank[north], rank[north_west]
    previous = np.vstack([np.zeros((1, channels), np.int64), values[:-1]])
    a, b, c = padded[rw], padded[rn], padded[np.where(rnw >= 0, rnw, rn)]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    med = np.where(c >= hi, lo, np.where(c <= lo, hi, a + b - c))
    has_w, has_n = (rw >= 0)[:, None], (rn >= 0)[:, None]
    pred = np.where(has_w & has_n, med, np.where(has_w, a, np.where(has_n, b, previous)))
    planes = _planes(values - pred, colour)
    distinct = _distinct(west, north, north_west)
    alphabet = _alphabet((1 << bit_depth) - 1)
    ops = OpList()
    first = None
    for plane in planes:
        coded = coding.zigzag(plane)
        model, bins = _plane_model(distinct, first, alphabet)
        coding.code_values(model, coded, ops, bins)
        first = coded if first is None else first
    return ops.finish()


def decode(data: bytes, index: np.ndarray, palette_size: int, channels: int, bit_depth: int) -> np.ndarray:
    """Inverse of ``encode``: the palette (P × C, int64) given the decoded index plane."""
    colour = channels >= 3
    maxval = (1 << bit_depth) - 1
    order, positions = _order(index, palette_size)
    west, north, north_west = _neighbours(index, positions)
    distinct = _distinct(west, north, north_west)
    dec = Decoder(data)
    alphabet = _alphabet(maxval)
    planes = []
    first = None
    for _ in range(channels):
        model, bins = _plane_model(distinct, first, alphabet)
        coded = coding.decode_values(model, dec, bins)
        first = coded if first is None else first
        planes.append(coding.unzigzag(coded))
    dec.check_finished()
    if colour:
        g = planes[0]
        planes = [planes[1] + g, g, planes[2] + g] + planes[3:]
    residuals = np.stack(planes, axis=1)
    rank = _ranks_of(order, palette_size)
    values = _reconstruct(residuals, rank[west], rank[north], rank[north_west])
    if values.size and (values.min() < 0 or values.max() > maxval):
        raise ContainerError("lossless payload: a palette colour falls outside the bit depth")
    palette = np.empty((palette_size, channels), dtype=np.int64)
    palette[order] = values
    return palette


def _reconstruct(residuals: np.ndarray, rw: np.ndarray, rn: np.ndarray, rnw: np.ndarray) -> np.ndarray:
    """The colours (P × C, in order of first use) from their residuals and their neighbours'
    ranks (−1: none), predicted as ``encode`` predicts them.  A colour needs only colours before it, so
    the colours are worked out in waves: all those whose neighbours are known at once (one
    Python step per colour only to find the waves; 100–550 waves on the dev sets' large
    palettes, where one colour at a time took 4.5 µs each: 70 ms for 16 k colours)."""
    size, channels = residuals.shape
    if not size:
        return np.zeros((0, channels), dtype=np.int64)
    has_w, has_n = rw >= 0, rn >= 0
    # A colour with neither neighbour (the first, and colours the plane never uses) predicts
    # from the colour before it (zeros for the first).
    previous = np.where(has_w | has_n, -1, np.arange(size) - 1)
    # Wave of each colour: one more than its latest neighbour's.
    level = [0] * (size + 1)  # level[-1]: a missing neighbour
    level[-1] = -1
    for j, (a, b, c, d) in enumerate(zip(rw.tolist(), rn.tolist(), rnw.tolist(), previous.tolist())):
        level[j] = 1 + max(level[a], level[b], level[c], level[d])
    waves = np.array(level[:size], dtype=np.int64)
    by_wave = np.argsort(waves, kind="stable")
    bounds = np.searchsorted(waves[by_wave], np.arange(int(waves.max()) + 2))
    values = np.zeros((size + 1, channels), dtype=np.int64)  # row −1: a missing neighbour
    nw_at = np.where(rnw >= 0, rnw, rn)  # no pixel above left: the one above stands in
    for k in range(bounds.size - 1):
        at = by_wave[bounds[k] : bounds[k + 1]]
        a, b, c = values[rw[at]], values[rn[at]], values[nw_at[at]]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        med = np.where(c >= hi, lo, np.where(c <= lo, hi, a + b - c))
        hw, hn = has_w[at, None], has_n[at, None]
        pred = np.where(hw & hn, med, np.where(hw, a, np.where(hn, b, values[previous[at]])))
        values[at] = pred + residuals[at]
    return values[:size]
