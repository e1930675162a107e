"""Encoder: long matches for the palette raster scan (payload version ≥ 9).

The raster scan codes every pixel with a symbol, which costs a fraction of a bit even inside a
stretch that repeats earlier pixels exactly (a glyph, a tile, a dialog's frame, the rings of a
radial gradient).  A long match names such a stretch once: where it starts, how long it is and
how far back its source lies, ~10–25 bits for all of its pixels.  This module finds them: a
greedy parse over the index plane in raster order that takes a match only where the symbols it
replaces are estimated to cost more than the match itself.
"""

from __future__ import annotations

import math

import numpy as np

from . import workers
from .raster import MIN_LONG, RECENT, LongMatches, Symbols

# How hard the parse looks, per effort: (earlier occurrences of a position's window tried, most
# recent first; the estimated bits of its first window below which no match is looked for there).
# Effort 1 used (4, 3.0) until session 21: a 3× faster parse for +0.3 % bytes; with payload
# version 11's rates the deeper parse saves 0.5 % on screenshots, comics and pixel art (every dev
# image), for an encode that is at most ~10–20 % slower on line and vector art.
SEARCH = {1: (12, 1.0), 2: (12, 1.0)}
MIN_GAIN_BITS = 4.0  # a match must be estimated to save at least this much
LAZY = True  # look one pixel ahead before taking a match (−0.24 % on 16 dev images, +17 % parse time)


def pixel_costs(scan: tuple, offsets: int, palette_size: int) -> np.ndarray:
    """Estimated bits of each pixel in the plain raster scan (lz = 0): the static cost of its
    symbol given its first-phase context, plus an order-0 index for a literal.  Flat (H · W)."""
    idx, sym, ctx, _ = scan
    literal = (sym == Symbols(offsets, 0).literal).ravel()
    flat_ctx = ctx.ravel()
    key = flat_ctx * (int(sym.max(initial=0)) + 1) + sym.ravel()
    # Context numbers are small (symbols × patterns): counted in tables, not sorted.
    joint = np.bincount(key)
    ctx_count = np.bincount(flat_ctx)
    bits = np.log2(ctx_count[flat_ctx] / joint[key])
    lits = idx.ravel()[literal]
    if lits.size:
        counts = np.bincount(lits, minlength=palette_size).astype(np.float64)
        bits[literal] += np.log2((lits.size + 0.5 * palette_size) / (counts[lits] + 0.5))
    return bits


def _windows(flat: np.ndarray) -> np.ndarray:
    """Per position, the previous position whose MIN_LONG pixels are the same (−1: none)."""
    n = flat.size - MIN_LONG + 1
    prev = np.full(max(flat.size, 0), -1, dtype=np.int64)
    if n <= 0:
        return prev
    key = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(MIN_LONG):
            key = key * np.uint64(0x9E3779B97F4A7C15) + flat[i : n + i].astype(np.uint64)
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    prev[order[same + 1]] = order[same]
    return prev


FIRST_BLOCK = 16  # pixels compared at once first (most candidates end within a few dozen)


def _pixel_bytes(flat: np.ndarray) -> tuple[bytes, int]:
    """The index plane as little-endian bytes, 1 or 2 (palettes of up to 2**16 colours) or 8 a pixel."""
    top = int(flat.max(initial=0))
    size = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 8
    return flat.astype(f"<u{size}").tobytes(), size


def _match_length(data: bytes, size: int, n: int, p: int, d: int) -> int:
    """How many of the ``n`` pixels from p on equal the pixels d earlier (a source may overlap
    its copy); ``data``: the pixels as ``size``-byte little-endian integers (``_pixel_bytes``).
    Blocks of doubling length are compared as bytes (one memcmp), and in the block that differs
    the first differing byte is the lowest set bit of the two blocks' XOR as integers: a handful
    of C calls instead of a Python step per pixel."""
    q, block = p, FIRST_BLOCK
    while q < n:
        k = min(block, n - q)
        a = data[q * size : (q + k) * size]
        b = data[(q - d) * size : (q - d + k) * size]
        if a != b:
            x = int.from_bytes(a, "little") ^ int.from_bytes(b, "little")
            return q - p + ((x & -x).bit_length() - 1) // (8 * size)
        q += k
        block *= 2
    return n - p


def _token_bits(value: int) -> float:
    """About what a hybrid-uint token and its raw bits cost."""
    return 2.0 + 1.3 * math.log2(value + 1.0)


def _distance_bits(dist: int, width: int) -> float:
    """About what a new distance costs as (dy, dx) tokens (``raster.split_distance``)."""
    dy = (dist + width // 2) // width
    return 2.0 + _token_bits(dy) + _token_bits(2 * abs(dist - dy * width))


SPLIT_PIXELS = 1 << 16  # index planes from this size are parsed in two halves (``find_long_matches``)


class _Plane:
    """What every part of a parse reads: the index plane as Python values and bytes, each
    position's previous equal window, the running sum of the pixels' estimated bits."""

    def __init__(self, index: np.ndarray, costs: np.ndarray, min_window_bits: float) -> None:
        self.height, self.width = index.shape
        flat = np.ascontiguousarray(index.reshape(-1))
        self.n = n = flat.size
        prev = _windows(flat)
        cum = np.concatenate([[0.0], np.cumsum(costs, dtype=np.float64)])
        window = cum[MIN_LONG:] - cum[:-MIN_LONG]
        # A match of MIN_LONG or more pixels needs an earlier equal window, so a position without
        # one (``prev`` −1) has none, with any distance: skipping it leaves the parse as it was.
        room = n - MIN_LONG + 1
        self.todo = np.flatnonzero((window[:room] >= min_window_bits) & (prev[:room] >= 0))
        self.prev = prev.tolist()
        self.values = flat.tolist()
        self.data, self.size = _pixel_bytes(flat)
        # Python floats and lists: the parse reads single elements ~10^6 times per megapixel, where
        # a NumPy scalar costs several times a float (the same IEEE doubles: the parse is unchanged).
        self.sums = cum.tolist()


def _halves(plane: _Plane) -> list[tuple[int, int]]:
    """The parts of the plane parsed apart: two at a row boundary that halves the positions to
    try (each part greedily from its own start), or one for a small plane."""
    if plane.n < SPLIT_PIXELS or plane.todo.size < 2:
        return [(0, plane.n)]
    middle = int(plane.todo[plane.todo.size // 2])
    cut = min(max(plane.width, middle - middle % plane.width), plane.n - plane.width)
    return [(0, cut), (cut, plane.n)] if 0 < cut < plane.n else [(0, plane.n)]


def find_long_matches(index: np.ndarray, costs: np.ndarray, min_gain: float = MIN_GAIN_BITS,
                      effort: int = 1, search: tuple[int, float] | None = None,
                      pool: workers.Pool | None = None, split: bool = True) -> LongMatches:
    """A greedy parse of the index plane (H, W) in raster order: at each position where copying
    could pay, the earlier occurrence (recent distances first, then the last few positions with
    the same MIN_LONG pixels, ``SEARCH``) whose match saves the most estimated bits (``costs``:
    per pixel, flat), taken if that saving is at least ``min_gain``.  ``search``: (chain, window
    bits) instead of the effort's (tests reproduce older encoders' parses).

    From SPLIT_PIXELS on (``split``), the plane is parsed in two halves, the second from a row
    boundary with no recent distances, and stitched (``_stitch``): the second half runs on a
    spare core of ``pool`` if there is one, and the matches are the same either way."""
    chain, min_window_bits = search if search is not None else SEARCH[min(max(effort, 1), 2)]
    if index.size < MIN_LONG:
        return LongMatches([], [], [])
    plane = _Plane(index, costs, min_window_bits)
    parts = _halves(plane) if split else [(0, plane.n)]
    parsed = (pool or workers.Pool(0)).map(lambda part: _parse(plane, *part, chain, min_gain), parts)
    return LongMatches(*_stitch(parsed))


def _stitch(parts: list[tuple[list[int], list[int], list[int]]]) -> tuple[list[int], list[int], list[int]]:
    """The parts' matches in one list: a part's matches that start inside the previous part's
    last match are cut to start after it (the same distance copies the same pixels), or dropped
    where fewer than MIN_LONG pixels remain."""
    starts, lengths, dists = (list(x) for x in parts[0])
    for part in parts[1:]:
        for p, length, d in zip(*part):
            end = starts[-1] + lengths[-1] if starts else 0
            if p < end:
                length -= end - p
                p = end
                if length < MIN_LONG:
                    continue
            starts.append(p)
            lengths.append(length)
            dists.append(d)
    return starts, lengths, dists


def _parse(plane: _Plane, lo: int, hi: int, chain: int, min_gain: float) -> tuple[list[int], list[int], list[int]]:
    """The greedy parse of positions lo … hi − 1 (a match may run past hi), from no match and no
    recent distance: (starts, lengths, distances)."""
    n, width = plane.n, plane.width
    todo = plane.todo[np.searchsorted(plane.todo, lo):np.searchsorted(plane.todo, hi)].tolist()
    prev_l, values, sums, data, size = plane.prev, plane.values, plane.sums, plane.data, plane.size
    starts: list[int] = []
    lengths: list[int] = []
    dists: list[int] = []
    token_bits: dict[int, float] = {}  # gaps and lengths repeat: each value's cost worked out once
    distance_bits: dict[int, float] = {}  # and so do distances
    recent: list[int] = []
    end = lo  # the end of the last match
    stops: dict[int, int] = {}  # per distance, where its last measured match stopped
    # (The helpers below are inlined in ``best_at``: it runs ~10^5-10^6 times per image and Python
    # calls cost more than the arithmetic; the parse is the same either way.)
    stop_of = stops.get
    bits_get = token_bits.get
    distance_get = distance_bits.get
    log2 = math.log2

    def best_at(p: int) -> tuple[float, int, int]:
        best_gain, best_len, best_d = min_gain, 0, 0
        gap = p - end
        head = bits_get(gap)
        if head is None:
            head = token_bits[gap] = _token_bits(gap)
        head += 1.5  # the match's kind and gap
        base = sums[p]
        here = values[p]
        tried: list[int] = []
        for d in recent:
            if d <= p and here == values[p - d]:
                tried.append(d)
                # A match at p − k with distance d that ran to q also runs from p to q: measured once.
                stop = stop_of(d, -1)
                if stop <= p:
                    stop = p + _match_length(data, size, n, p, d)
                    stops[d] = stop
                length = stop - p
                if length >= MIN_LONG:
                    lb = bits_get(length - MIN_LONG)
                    if lb is None:
                        lb = token_bits[length - MIN_LONG] = 2.0 + 1.3 * log2(length - MIN_LONG + 1.0)
                    gain = sums[stop] - base - head - lb
                    if gain > best_gain:
                        best_gain, best_len, best_d = gain, length, d
        c = prev_l[p]
        for _ in range(chain):
            if c < 0:
                break
            d = p - c
            if d not in tried:  # (chain distances grow: only a recent one can come twice)
                stop = stop_of(d, -1)
                if stop <= p:
                    stop = p + _match_length(data, size, n, p, d)
                    stops[d] = stop
                length = stop - p
                if length >= MIN_LONG:  # (shorter: a hash collision)
                    lb = bits_get(length - MIN_LONG)
                    if lb is None:
                        lb = token_bits[length - MIN_LONG] = 2.0 + 1.3 * log2(length - MIN_LONG + 1.0)
                    gain = sums[stop] - base - head - lb
                    if gain > best_gain:
                        db = distance_get(d)
                        if db is None:
                            db = distance_bits[d] = _distance_bits(d, width)
                        gain -= db
                        if gain > best_gain:
                            best_gain, best_len, best_d = gain, length, d
            c = prev_l[c]
        return best_gain, best_len, best_d

    for p in todo:
        if p < end:
            continue
        gain, length, d = best_at(p)
        if not length:
            continue
        if LAZY and p + 1 <= n - MIN_LONG:
            later = best_at(p + 1)
            if later[1] and later[0] > gain:  # one pixel coded as a symbol, then a better match
                p, (gain, length, d) = p + 1, later
        starts.append(p)
        lengths.append(length)
        dists.append(d)
        end = p + length
        if d in recent:
            recent.remove(d)
        recent.insert(0, d)
        del recent[RECENT:]
    return starts, lengths, dists
