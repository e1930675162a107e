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

import math

import numpy as np

from ..errors import ContainerError
from . import coding
from .adaptive import AdaptiveModel
from .coding import OpList

# Bands (version ≥ 13): the index plane is cut into K bands of ceil(H / K) rows, set side by side
# as one plane of K·W columns (the last band padded by repeating the image's last row), and that
# plane is scanned.  Why: a row's cost in the decoder is mostly calls whose time does not grow
# with its width (~200–400 µs), so K bands decode in about 1/K of the row steps.
MAX_BANDS = 16


def band_shape(height: int, width: int, bands: int) -> tuple[int, int]:
    """(rows, columns) of the plane the scan codes: ceil(H / K) × K·W."""
    return -(-height // bands), width * bands


def to_bands(plane: np.ndarray, bands: int) -> np.ndarray:
    """(H, W, …) → the banded plane (``band_shape``): band b is image rows b·R … b·R + R − 1."""
    if bands == 1:
        return plane
    rows = -(-plane.shape[0] // bands)
    padded = np.concatenate([plane, np.repeat(plane[-1:], rows * bands - plane.shape[0], axis=0)])
    parts = padded.reshape((bands, rows) + plane.shape[1:])
    return np.concatenate(list(parts), axis=1)


def from_bands(banded: np.ndarray, bands: int, height: int) -> np.ndarray:
    """Inverse of ``to_bands``: the image's ``height`` rows."""
    if bands == 1:
        return banded
    width = banded.shape[1] // bands
    parts = [banded[:, b * width : (b + 1) * width] for b in range(bands)]
    return np.concatenate(parts, axis=0)[:height]


SYM_LEFT = 0
ABOVE = ((1, 0), (1, -1), (1, 1), (2, 0))  # (dy, dx) back: N, NE, NW, NN
SYM_ABOVE = 1  # SYM_ABOVE + r: the r-th distinct pixel above
SYM_OFFSET = SYM_ABOVE + len(ABOVE)  # SYM_OFFSET + k: copy offset k, then the symbols below
PATTERNS = 8  # context bits: N = NW, N = NE, N = NN
# After the K copy offsets (version ≥ 4, "lz"): continue the left pixel's copy, take the copy of
# the pixel above, start a copy with a new explicit offset; then (every version) literal.
MIN_NEW_RUN = 6  # encoder: a new offset must copy at least this many pixels
LZ_OFF, LZ_CARRY, LZ_EXPLICIT = 0, 1, 2  # free copies: off; carried through left/above pixels; only by "continue"
# Literals (version ≥ 5): a palette index each, or (cache) a rank in the list of colours that
# literals under a pixel above of the same colour have taken before, escaping to the index.
# Version ≥ 6 adds *fresh* (a bit, with or without the cache): the palette is in order of first
# use, and an escaped literal is first a flag "a colour's first use" (its index is then the next
# unused one) or else the index of a colour used before.
# Version ≥ 10 adds *above* (a bit, with any of the others): an escaped literal's index (and a
# fresh colour's count) is coded in the context of the colour of the pixel above it.
LITERALS_PLAIN, LITERALS_CACHE, LITERALS_FRESH, LITERALS_ABOVE = 0, 1, 2, 4
LITERAL_CODINGS = tuple(range(8))  # bit 0 cache, bit 1 fresh, bit 2 above
LITERAL_CODINGS_V6 = (0, 1, 2, 3)  # versions 6 to 9
ABOVE_COUNTS = 1 << 16  # literal contexts × palette size at most
ABOVE_MAX_PALETTE = 256  # the literals above need a palette of at most this many colours (else refused)
CACHE_SIZE = 16  # colours remembered per colour above; rank CACHE_SIZE is the escape
SMALL_UPDATE = 24  # cache updates of at most this many escapes run as a Python loop (faster than numpy)


class Symbols:
    """The symbol numbers of a raster plane.  ``size`` symbols are coded; with long matches
    (version ≥ 9) a pixel they cover is given the uncoded symbol ``matched`` for the contexts of
    its neighbours; ``none`` stands for a neighbour that does not exist."""

    def __init__(self, offsets: int, lz: int, long: bool = False) -> None:
        self.offsets = offsets
        self.lz = lz
        base = SYM_OFFSET + offsets
        self.inherit_left = base if lz else -1
        self.inherit_above = base + 1 if lz else -1
        self.new = base + 2 if lz else -1
        self.literal = base + 3 if lz else base
        self.size = self.literal + 1
        self.matched = self.size if long else -1
        self.none = self.size + 1 if long else self.size
        self.classes = self.none + 1


def alphabet(offsets: int, lz: int = LZ_OFF) -> int:
    return Symbols(offsets, lz).size


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
    # int8 (at most 4 candidates): the int64 cumsum over (4, H, W) cost 0.45 s on a 3.7 MP image.
    ranks = np.cumsum(new, axis=0, dtype=np.int8) - new
    return new, ranks


def _context(vals: np.ndarray, ok: np.ndarray, above_sym: np.ndarray, none: int) -> np.ndarray:
    """Context bin: (symbol above, or ``none`` on row 0) · PATTERNS + equality bits."""
    n, ne, nw, nn = vals
    bits = (ok[2] & (n == nw)).astype(np.int64) + 2 * (ok[1] & (n == ne)) + 4 * (ok[3] & (n == nn))
    bits = np.where(ok[0], bits, 0)
    cls = np.where(ok[0], above_sym, none)
    return cls * PATTERNS + bits


# Version ≥ 7, "contexts" = 1 (*row contexts*): the first phase's bin is refined by what the rows
# above did: how many symbols of the row above within ±ACTIVITY_RADIUS columns are neither left
# nor N (0, 1, 2, 3+), and the class of the symbol two rows up (left, N, other, no such row).
# Why: a flat run above says little on its own about whether this row starts something new; busy
# rows above and the row before them do (−2 … −9 % of the symbols' bytes on comics, screens, vector).
CONTEXTS_PLAIN, CONTEXTS_ROWS = 0, 1
ACTIVITY_RADIUS = 4
ROW_CONTEXTS = 16  # 4 activity levels × 4 classes two rows up


def row_contexts(above: np.ndarray, above2: np.ndarray | None) -> np.ndarray:
    """The refinement (0 … 15) of each column of a row from the symbols of rows y − 1 and y − 2
    (``above2`` None when y < 2)."""
    busy = (above > SYM_ABOVE).astype(np.int64)  # symbols are ≥ 0: neither left (0) nor N (1)
    r = ACTIVITY_RADIUS
    activity = np.convolve(busy, np.ones(2 * r + 1, dtype=np.int64))[r:r + above.shape[0]]
    cls2 = 3 if above2 is None else np.minimum(above2, 2)  # left 0, N 1, anything else 2
    return np.minimum(activity, 3) * 4 + cls2


# Phases of a row, decoded one after the other: (first column, column step, distance of the
# same-row neighbours whose symbols are context: 0 = none).
PHASES = ((0, 2, 0), (1, 2, 1))


class _Models:
    """The adaptive models of a raster plane (all persist from row to row)."""

    def __init__(self, syms: Symbols, palette_size: int, height: int, width: int,
                 contexts: int = CONTEXTS_PLAIN, literals: int = LITERALS_PLAIN) -> None:
        size = syms.size
        classes = syms.classes
        if contexts == CONTEXTS_ROWS:  # each first-phase bin split 16 ways; the blend's middle level is the bin
            bins = classes * PATTERNS * ROW_CONTEXTS
            self.phases = [AdaptiveModel(1, bins, size, np.arange(bins) // ROW_CONTEXTS)]
        else:
            self.phases = [AdaptiveModel(1, classes * PATTERNS, size, np.arange(classes * PATTERNS) // PATTERNS)]
        self.phases += [AdaptiveModel(1, classes * classes * PATTERNS, size,
                                      np.arange(classes * classes * PATTERNS) // PATTERNS) for _ in PHASES[1:]]
        self.literal_bins = literal_bins(palette_size) if literals & LITERALS_ABOVE else 1
        self.literal = AdaptiveModel(1, self.literal_bins, palette_size)
        self.fresh = AdaptiveModel(1, 1, 2)  # fresh literals: 1 = a colour's first use
        self.rank = AdaptiveModel(1, CACHE_SIZE + 1, CACHE_SIZE + 1)  # literal cache: bin = list length
        self.dy = AdaptiveModel(1, 1, token_count(height - 1))
        self.dx = AdaptiveModel(1, 2, token_count(2 * width))
        if syms.matched >= 0:  # long matches (version ≥ 9)
            pixels = height * width
            self.gap = AdaptiveModel(1, 1, token_count(pixels))
            self.length = AdaptiveModel(1, 1, token_count(pixels))
            self.recent = AdaptiveModel(1, 1, RECENT + 1)
            self.long_dy = AdaptiveModel(1, 1, token_count(height))
            self.long_dx = AdaptiveModel(1, 2, token_count(2 * width))


def literal_bins(palette_size: int) -> int:
    """Context bins of the literal model with LITERALS_ABOVE: one per colour above and one for row
    0 (the last), fewer on larger palettes (colours from the last bin on share it), so that a
    forged payload's rows cost at most ABOVE_COUNTS probabilities each."""
    return max(2, min(palette_size + 1, ABOVE_COUNTS // max(palette_size, 1)))


def literal_contexts(above_row: np.ndarray | None, cols: np.ndarray, bins: int) -> np.ndarray:
    """The literal bins of the pixels at ``cols``: the colour above (capped at the last bin), or
    the last bin in row 0; all 0 for a one-bin model."""
    if bins == 1:
        return np.zeros(cols.size, dtype=np.int64)
    if above_row is None:
        return np.full(cols.size, bins - 1, dtype=np.int64)
    return np.minimum(above_row[cols].astype(np.int64), bins - 1)


def token_count(top: int) -> int:
    """Alphabet of the tokens of values 0 … top."""
    return int(coding.tokenize(np.array([max(top, 0)]))[0][0]) + 1


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


def _code_offsets(dy_model: AdaptiveModel, dx_model: AdaptiveModel, dy: np.ndarray, dx: np.ndarray, ops) -> None:
    """Offsets (dy, dx): dy tokens (+ raw bits), then zigzag(dx) tokens by [dy = 0] (+ raw bits)."""
    coding.code_values(dy_model, dy, ops)
    coding.code_values(dx_model, coding.zigzag(dx), ops, (dy == 0).astype(np.int64))


def _decode_offsets(dy_model: AdaptiveModel, dx_model: AdaptiveModel, dec, count: int) -> tuple[np.ndarray, np.ndarray]:
    dy = coding.decode_values(dy_model, dec, np.zeros(count, np.int64))
    dx = coding.unzigzag(coding.decode_values(dx_model, dec, (dy == 0).astype(np.int64)))
    return dy, dx


def first_phase_contexts(sym: np.ndarray, ctx: np.ndarray, contexts: int) -> np.ndarray:
    """Every pixel's first-phase bin (the base bin, or with row contexts base · 16 + refinement)."""
    if contexts != CONTEXTS_ROWS:
        return ctx
    extra = np.full(sym.shape, 3, dtype=np.int64)  # row 0
    for y in range(1, sym.shape[0]):  # the decoder's arithmetic, row by row
        extra[y] = row_contexts(sym[y - 1], sym[y - 2] if y >= 2 else None)
    return ctx * ROW_CONTEXTS + extra


def encode_raster(index: np.ndarray, palette_size: int, offsets: list[tuple[int, int]], ops, lz: int = LZ_CARRY,
                  literals: int = LITERALS_PLAIN, scan=None, contexts: int = CONTEXTS_PLAIN,
                  long: LongMatches | None = None) -> None:
    """Appends the symbols of the index plane (H, W) to ``ops`` in decode order.  ``scan``: the
    result of ``symbols(index, offsets, lz, covered)`` if the caller has it already; ``long``:
    the long matches (version ≥ 9, lz = 0 only), coded first, whose pixels get no symbol."""
    height, width = index.shape
    covered = None
    if long is not None:
        if lz != LZ_OFF:
            raise ValueError("long matches go with free copies off")
        covered = long.sources(height * width).reshape(height, width) >= 0
    syms = Symbols(len(offsets), lz, long is not None)
    idx, sym, ctx, new_offsets = scan if scan is not None else symbols(index, offsets, lz, covered)
    if long is not None and int(np.count_nonzero(sym == syms.matched)) != int(np.count_nonzero(covered)):
        raise ValueError("the scan was not made with these long matches")
    models = _Models(syms, palette_size, height, width, contexts, literals)
    if long is not None:
        _code_long(models, long, width, ops)
    first_bins = first_phase_contexts(sym, ctx, contexts)
    cache = LiteralCache(palette_size) if literals & LITERALS_CACHE else None
    used = 0 if literals & LITERALS_FRESH else -1  # fresh: colours used so far (= the next new index)
    for y in range(height):
        for (start, step, dist), model in zip(PHASES, models.phases):
            cols = np.arange(start, width, step)
            if covered is not None:
                cols = cols[~covered[y, cols]]
            model.encode(ops, 0, _phase_context(first_bins[y] if dist == 0 else ctx[y], sym[y], cols, dist, syms.none),
                         sym[y, cols])
        if lz:
            dy, dx = new_offsets[y]
            if dy.size:
                _code_offsets(models.dy, models.dx, dy, dx, ops)
        used = _encode_literals(models, cache, used, ops, idx, y, np.flatnonzero(sym[y] == syms.literal))


def _encode_literals(models: _Models, cache: LiteralCache | None, used: int, ops, idx: np.ndarray, y: int,
                     cols: np.ndarray) -> int:
    """Row ``y``'s literals (at ``cols``) as ``decode_raster`` reads them: cache ranks, fresh
    flags, then the indices of the escapes; returns the colours used so far (fresh) or −1."""
    lits = idx[y, cols]
    if cache is not None and cols.size:
        above = cache.contexts(idx[y - 1] if y else None, cols)
        ranks = cache.ranks(above, lits)
        models.rank.encode(ops, 0, cache.length[above], ranks)
        escape = ranks == CACHE_SIZE
        lits = lits[escape]
        cols = cols[escape]
        cache.update(above[escape], lits)
    bins = literal_contexts(idx[y - 1] if y else None, cols, models.literal_bins)
    if used >= 0 and lits.size:
        first = first_uses(lits, used)
        models.fresh.encode(ops, 0, np.zeros(lits.size, np.int64), first.astype(np.int64))
        models.literal.encode_observed(lits[first], None if models.literal_bins == 1 else bins[first])
        used += int(first.sum())
        lits = lits[~first]
        bins = bins[~first]
    models.literal.encode(ops, 0, bins, lits)
    return used


def literal_bytes(idx: np.ndarray, literal: np.ndarray, palette_size: int, literals: int) -> int:
    """Encoder: the exact bytes of the literals (``literal`` mask over ``idx``, in the palette
    order that ``literals`` needs) coded alone, as ``encode_raster`` codes them."""
    models = _Models(Symbols(0, LZ_OFF), palette_size, 1, 1, CONTEXTS_PLAIN, literals)
    cache = LiteralCache(palette_size) if literals & LITERALS_CACHE else None
    used = 0 if literals & LITERALS_FRESH else -1
    ops = OpList()
    for y in np.flatnonzero(literal.any(axis=1)).tolist():
        used = _encode_literals(models, cache, used, ops, idx, y, np.flatnonzero(literal[y]))
    return len(ops.finish())


# Long matches (version ≥ 9): runs of pixels in raster order, each copied from the pixel D
# positions earlier (D = dy · width + dx), listed before the rows and coded per match, not per
# pixel.  Why: the per-pixel symbols cost a fraction of a bit even where a whole stretch repeats
# (a glyph, a tile, a dialog's frame); a match costs ~10–25 bits for all of it.
MIN_LONG = 8  # shortest long match
RECENT = 4  # distances remembered: a match may reuse one by its rank (most recent first)


class LongMatches:
    """Long matches as arrays: raster start, length, distance (all int64, in raster order)."""

    def __init__(self, starts: np.ndarray, lengths: np.ndarray, dists: np.ndarray) -> None:
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.dists = np.asarray(dists, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.starts.size)

    def sources(self, pixels: int) -> np.ndarray:
        """Per raster position: the position it copies (earlier in raster order), or −1."""
        src = np.full(pixels, -1, dtype=np.int64)
        if self.starts.size:
            total = int(self.lengths.sum())
            shift = self.starts - (np.cumsum(self.lengths) - self.lengths)
            pos = np.arange(total, dtype=np.int64) + np.repeat(shift, self.lengths)
            src[pos] = pos - np.repeat(self.dists, self.lengths)
        return src


def _recent_ranks(dists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encoder: per match the rank of its distance among the RECENT most recently used distinct
    ones (RECENT = new), and the new distances in order."""
    recent: list[int] = []
    ranks, new = [], []
    for d in dists.tolist():
        if d in recent:
            r = recent.index(d)
            recent.pop(r)
        else:
            r = RECENT
            new.append(d)
        ranks.append(r)
        recent.insert(0, d)
        del recent[RECENT:]
    return np.array(ranks, dtype=np.int64), np.array(new, dtype=np.int64)


def split_distance(d: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A raster distance as (dy ≥ 0, dx) with dy · width + dx = d and −width/2 ≤ dx < width − width/2."""
    dy = (d + width // 2) // width
    return dy, d - dy * width


def _code_long(models: _Models, long: LongMatches, width: int, ops) -> None:
    """The match list: gap tokens (+ raw bits), length − MIN_LONG tokens (+ raw bits), recent
    ranks, then the new distances as dy tokens (+ raw bits) and zigzag(dx) tokens by [dy = 0]
    (+ raw bits)."""
    ends = long.starts + long.lengths
    gaps = long.starts - np.concatenate([[0], ends[:-1]])
    coding.code_values(models.gap, gaps, ops)
    coding.code_values(models.length, long.lengths - MIN_LONG, ops)
    ranks, new = _recent_ranks(long.dists)
    models.recent.encode(ops, 0, np.zeros(ranks.size, np.int64), ranks)
    if new.size:
        _code_offsets(models.long_dy, models.long_dx, *split_distance(new, width), ops)


def _decode_long(models: _Models, dec, count: int, height: int, width: int) -> LongMatches:
    """Inverse of ``_code_long``, every match checked against the image before any use."""
    pixels = height * width
    zeros = np.zeros(count, np.int64)
    gaps = coding.decode_values(models.gap, dec, zeros)
    lengths = coding.decode_values(models.length, dec, zeros) + MIN_LONG
    ranks = models.recent.decode(dec, 0, zeros)
    fresh = int(np.count_nonzero(ranks == RECENT))
    new = np.zeros(0, dtype=np.int64)
    if fresh:
        dy, dx = _decode_offsets(models.long_dy, models.long_dx, dec, fresh)
        if np.any(np.abs(dx) >= width) or np.any(dy > height):
            raise ContainerError("lossless payload: a long match's distance is invalid")
        new = dy * width + dx
    if count and (int(gaps.max()) > pixels or int(lengths.max()) > pixels):
        raise ContainerError("lossless payload: a long match runs past the image")
    ends = np.cumsum(gaps + lengths)
    # Every term is ≥ 8, so the ends rise strictly; a running sum that wrapped around would not.
    if count and (int(ends[-1]) > pixels or np.any(np.diff(ends) <= 0)):
        raise ContainerError("lossless payload: a long match runs past the image")
    starts = ends - lengths
    dists = np.empty(count, dtype=np.int64)
    recent: list[int] = []
    pending = iter(new.tolist())
    for i, r in enumerate(ranks.tolist()):  # one step per match (not per pixel)
        if r == RECENT:
            d = next(pending)
            if d in recent:  # it had to be named by its rank: one stream per match list
                raise ContainerError("lossless payload: a long match's new distance is a recent one")
        elif r < len(recent):
            d = recent.pop(r)
        else:
            raise ContainerError("lossless payload: a long match names a distance not yet used")
        dists[i] = d
        recent.insert(0, d)
        del recent[RECENT:]
    if count and (dists.min() < 1 or np.any(dists > starts)):
        raise ContainerError("lossless payload: a long match copies from outside the image")
    return LongMatches(starts, lengths, dists)


def first_uses(lits: np.ndarray, used: int) -> np.ndarray:
    """Encoder (fresh literals): which of a row's escaped literals (column order) are their colour's
    first use, given that ``used`` colours were used before the row and the palette is in order
    of first use (so new colours come as used, used + 1, … in column order)."""
    fresh = lits >= used
    if not fresh.any():
        return fresh
    values, at = np.unique(lits[fresh], return_index=True)
    if not np.array_equal(values, used + np.arange(values.size)) or not np.all(np.diff(at) > 0):
        raise ValueError("fresh literals need the palette in order of first use")
    first = np.zeros(lits.size, dtype=bool)
    first[np.flatnonzero(fresh)[at]] = True
    return first


class LiteralCache:
    """Literal cache (payload version ≥ 5): per palette colour c, the first CACHE_SIZE distinct
    colours that escaped literals took under a pixel above of colour c (one more list for row 0).
    Dithered gradients and anti-aliased edges repeat a few colour pairs vertically, so a rank in
    a short list costs far fewer bits than a palette index.  The lists change only between rows,
    so a row's literals are decoded in bulk."""

    def __init__(self, palette_size: int) -> None:
        self.none = palette_size  # the list of row 0 (no pixel above)
        self.table = np.full((palette_size + 1, CACHE_SIZE), -1, dtype=np.int64)
        self.length = np.zeros(palette_size + 1, dtype=np.int64)

    def contexts(self, above_row: np.ndarray | None, cols: np.ndarray) -> np.ndarray:
        """The list each literal at columns ``cols`` uses: the colour above, or the row-0 list."""
        if above_row is None:
            return np.full(cols.size, self.none, dtype=np.int64)
        return above_row[cols].astype(np.int64)

    def ranks(self, above: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Encoder: each literal's rank in its list, or CACHE_SIZE (escape) when it is not there."""
        hit = self.table.take(above, axis=0) == values[:, None]  # (take: ~3x faster than [] on narrow rows)
        return np.where(hit.any(axis=1), hit.argmax(axis=1), CACHE_SIZE)

    def lookup(self, above: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """Decoder: the colours of the literals that hit (ranks < CACHE_SIZE) their lists."""
        if np.any(ranks >= self.length[above]):
            raise ContainerError("lossless payload: a literal names a cache entry that does not exist")
        return self.table[above, ranks]

    def update(self, above: np.ndarray, values: np.ndarray) -> None:
        """After a row: each escaped literal's colour joins its list (column order, once, while
        the list has room)."""
        if not values.size:
            return
        if values.size <= SMALL_UPDATE:  # most rows escape a handful of literals: plain Python
            for c, v in zip(above.tolist(), values.tolist()):
                n = int(self.length[c])
                if n < CACHE_SIZE and v not in self.table[c, :n].tolist():
                    self.table[c, n] = v
                    self.length[c] = n + 1
            return
        keys = above * (self.none + 1) + values
        _, first = np.unique(keys, return_index=True)
        first.sort()
        above, values = above[first], values[first]
        fresh = ~(self.table.take(above, axis=0) == values[:, None]).any(axis=1)
        above, values = above[fresh], values[fresh]
        if not values.size:
            return
        order = np.argsort(above, kind="stable")
        above, values = above[order], values[order]
        slot = self.length[above] + _position_in_run(above)
        room = slot < CACHE_SIZE
        self.table[above[room], slot[room]] = values[room]
        self.length += np.bincount(above[room], minlength=self.length.size)


def _position_in_run(keys: np.ndarray) -> np.ndarray:
    """For sorted ``keys``: each one's position among the equal keys before it (0, 1, … per run)."""
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return np.arange(keys.size) - np.repeat(starts, np.diff(np.append(starts, keys.size)))


def literal_ranks(idx: np.ndarray, literal: np.ndarray, palette_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Encoder: for the literals (``literal`` mask, raster order), their cache bins (list lengths)
    and rank symbols, as ``encode_raster`` would code them with the cache on."""
    cache = LiteralCache(palette_size)
    bins, ranks = [], []
    for y in range(idx.shape[0]):
        cols = np.flatnonzero(literal[y])
        if not cols.size:
            continue
        above = cache.contexts(idx[y - 1] if y else None, cols)
        lits = idx[y, cols]
        r = cache.ranks(above, lits)
        bins.append(cache.length[above])
        ranks.append(r)
        escape = r == CACHE_SIZE
        cache.update(above[escape], lits[escape])
    if not bins:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(bins), np.concatenate(ranks)


def _window_sources(idx: np.ndarray) -> np.ndarray:
    """Encoder: per pixel, the raster position of the nearest earlier pixel whose 4-pixel row
    window (starting there) hashes the same, or −1 (candidate sources for new offsets)."""
    height, width = idx.shape
    out = np.full(height * width, -1, dtype=np.int64)
    if width < 4:
        return out.reshape(height, width)
    k = idx.astype(np.uint64)
    win = np.zeros((height, width - 3), dtype=np.uint64)
    for i in range(4):
        win = (win ^ (k[:, i : i + width - 3] * np.uint64(0x9E3779B97F4A7C15 + 2 * i + 1))) * np.uint64(0xFF51AFD7ED558CCD)
    pos = (np.arange(height)[:, None] * width + np.arange(width - 3)[None, :]).ravel()
    flat = win.ravel()
    order = np.argsort(flat, kind="stable")
    same = np.flatnonzero(flat[order][1:] == flat[order][:-1]) + 1
    out[pos[order[same]]] = pos[order[same - 1]]
    return out.reshape(height, width)


CHAIN = 8  # encoder: earlier window occurrences tried per new offset
PREFER_NEAR = 2.0  # encoder: a farther candidate must score this many times the nearer one
LOOK_ROWS = 4  # encoder: rows scored per candidate (a copy that holds for the next rows is worth more)


def _best_source(runs: _Runs, chain: list[int], y: int, x: int) -> tuple[int, int] | None:
    """Encoder: the offset, among the nearest CHAIN earlier occurrences of the window at (y, x),
    whose copy matches most pixels here and at the same columns of the next rows.  ``chain``:
    ``_window_sources`` flattened to a list."""
    width, height = runs.width, runs.height
    pos = chain[y * width + x]
    best, best_score = None, 0
    rows = min(LOOK_ROWS, height - y)
    for _ in range(CHAIN):
        if pos < 0:
            break
        sy, sx = divmod(pos, width)
        dy, dx = y - sy, x - sx
        run = runs(y, x, dy, dx)
        if run >= MIN_NEW_RUN:
            score = run
            for r in range(1, rows):
                score += runs(y + r, x, dy, dx)
            if best is None or score > PREFER_NEAR * best_score:
                best, best_score = (dy, dx), score
        pos = chain[pos]
    return best


class _Runs:
    """Encoder: ``runs(y, x, dy, dx)`` = how many pixels from (y, x) on equal their source at offset
    (dy, dx) (0 when the source is outside the row or the offset does not point back).  Rows are
    byte strings (one or two bytes a pixel) compared by slices of growing length, then bisected: a
    few microseconds a call."""

    def __init__(self, idx: np.ndarray) -> None:
        self.height, self.width = idx.shape
        self.size = 1 if idx.max(initial=0) < 256 else 2
        self.rows = [row.tobytes() for row in idx.astype(np.uint8 if self.size == 1 else ">u2")]

    def __call__(self, y: int, x: int, dy: int, dx: int) -> int:
        width = self.width
        sy, sx = y - dy, x - dx
        if sy < 0 or sx < 0 or sx >= width or (dy == 0 and dx <= 0):
            return 0
        n = width - (x if x > sx else sx)
        f = self.size
        a, b = self.rows[y], self.rows[sy]
        x *= f
        sx *= f
        i, step = 0, 8
        while i < n:
            j = i + step
            if j > n:
                j = n
            if a[x + i * f : x + j * f] == b[sx + i * f : sx + j * f]:
                i = j
                step *= 4
                continue
            while j - i > 8:  # the first mismatch is in [i, j)
                mid = (i + j) >> 1
                if a[x + i * f : x + mid * f] == b[sx + i * f : sx + mid * f]:
                    i = mid
                else:
                    j = mid
            while a[x + i * f : x + i * f + f] == b[sx + i * f : sx + i * f + f]:
                i += 1
            return i
        return n


def _static_runs(idx: np.ndarray, offsets: list[tuple[int, int]]) -> tuple[list, list]:
    """Encoder: per pixel, the first copy offset with the longest run from there (``_Runs``) and
    that run (0 and 0 when there are none), as nested lists."""
    height, width = idx.shape
    cols = np.arange(width)
    best_k = np.zeros((height, width), dtype=np.int64)
    best_run = np.zeros((height, width), dtype=np.int64)
    for k, (dy, dx) in enumerate(offsets):
        if dy == 0 and dx <= 0 or abs(dx) >= width or dy >= height:
            continue
        eq = np.zeros((height, width), dtype=bool)
        x0, x1 = max(dx, 0), min(width, width + dx)
        eq[dy:, x0:x1] = idx[dy:, x0:x1] == idx[: height - dy, x0 - dx : x1 - dx]
        nxt = np.where(eq, width, cols)
        run = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1] - cols
        better = run > best_run
        best_k[better] = k
        best_run[better] = run[better]
    return best_k.tolist(), best_run.tolist()


def symbols(index: np.ndarray, offsets: list[tuple[int, int]], lz: int = LZ_CARRY, covered: np.ndarray | None = None):
    """Encoder: (index as int64, symbol per pixel, context bin per pixel, per row the new
    offsets (dy, dx) in column order).  ``covered``: the pixels of long matches (lz = 0 only),
    which get the uncoded symbol ``matched``."""
    height, width = index.shape
    syms = Symbols(len(offsets), lz, covered is not None)
    idx = index.astype(np.int64)
    prev1 = np.concatenate([idx[:1], idx[:-1]], axis=0)
    prev2 = np.concatenate([idx[:2], idx[:-2]], axis=0)[:height]
    rows = np.arange(height)[:, None]
    vals, ok = _above(prev1, prev2, rows >= 1, rows >= 2)
    new, ranks = _ranks(vals, ok)
    x = np.arange(width)
    sym = np.full((height, width), syms.literal, dtype=np.int64)
    found = np.zeros((height, width), dtype=bool)
    left = np.zeros((height, width), dtype=bool)
    left[:, 1:] = idx[:, 1:] == idx[:, :-1]
    sym[left] = SYM_LEFT
    found |= left
    for j in range(len(ABOVE)):
        hit = ~found & new[j] & (vals[j] == idx)
        sym[hit] = SYM_ABOVE + ranks[j][hit]
        found |= hit
    new_offsets = []
    if lz:
        table = list(offsets)
        chain = _window_sources(idx).reshape(-1).tolist()
        runs = _Runs(idx)
        static_k, static_run = _static_runs(idx, offsets)
        ids_prev = np.full(width, -1, dtype=np.int64)
        for y in range(height):
            # Copy ids flow left to right through every pixel coded by left / above (a copy keeps
            # going across the pixels that need no copy); a literal ends it.
            ids = np.full(width, -1, dtype=np.int64)
            row_new = []
            cur = -1
            hard = np.flatnonzero(~found[y]).tolist()  # pixels that left / above cannot code
            hard.append(width)
            h = 0
            xx = 0
            row_k, row_run = static_k[y], static_run[y]
            while xx < width:
                if lz == LZ_EXPLICIT and cur >= 0:
                    run = runs(y, xx, *table[cur])
                    sym[y, xx : xx + run] = syms.inherit_left
                    ids[xx : xx + run] = cur
                    xx += run
                    cur = -1
                    continue
                while hard[h] < xx:
                    h += 1
                if hard[h] > xx:
                    if lz == LZ_CARRY:
                        ids[xx : hard[h]] = cur
                    else:
                        cur = -1
                    xx = hard[h]
                    continue
                if lz == LZ_CARRY and cur >= 0 and runs(y, xx, *table[cur]) > 0:
                    sym[y, xx] = syms.inherit_left
                    ids[xx] = cur
                    xx += 1
                    continue
                best, best_sym, best_run = -1, syms.literal, 0
                if ids_prev[xx] >= 0:
                    run = runs(y, xx, *table[ids_prev[xx]])
                    if run:
                        best, best_sym, best_run = int(ids_prev[xx]), syms.inherit_above, run
                if row_run[xx] > best_run:  # the first of the longest copy offset runs
                    best, best_sym, best_run = row_k[xx], SYM_OFFSET + row_k[xx], row_run[xx]
                if best < 0 and chain[y * width + xx] >= 0:
                    off = _best_source(runs, chain, y, xx)
                    if off is not None:
                        best, best_sym = len(table), syms.new
                        table.append(off)
                        row_new.append(off)
                sym[y, xx] = best_sym
                ids[xx] = best
                cur = best
                xx += 1
            ids_prev = ids
            arr = np.array(row_new, dtype=np.int64).reshape(-1, 2)
            new_offsets.append((arr[:, 0], arr[:, 1]))
    else:
        for k, (dy, dx) in enumerate(offsets):
            sy = rows - dy
            sx = x[None, :] - dx
            inside = (sy >= 0) & (sx >= 0) & (sx < width)
            src = idx[np.clip(sy, 0, height - 1), np.clip(sx, 0, width - 1)]
            hit = ~found & inside & (src == idx)
            sym[hit] = SYM_OFFSET + k
            found |= hit
    above_sym = np.concatenate([sym[:1], sym[:-1]], axis=0)
    scan = idx, sym, _context(vals, ok, above_sym, syms.none), new_offsets
    return scan if covered is None else cover(scan, covered, len(offsets), lz)


def cover(scan: tuple, covered: np.ndarray, offsets: int, lz: int = LZ_OFF) -> tuple:
    """The plain scan (``symbols`` without long matches) with the pixels of long matches given the
    symbol ``matched``: their neighbours' contexts follow, the pixels' own patterns stay."""
    if lz != LZ_OFF:
        raise ValueError("long matches go with free copies off")
    idx, sym, ctx, new_offsets = scan
    syms = Symbols(offsets, lz, True)
    sym = np.where(covered, syms.matched, sym)
    above = np.concatenate([np.full((1, sym.shape[1]), syms.none), sym[:-1]], axis=0)  # row 0: no pixel above
    return idx, sym, above * PATTERNS + ctx % PATTERNS, new_offsets


def _sequential_bits(values: np.ndarray, alphabet: int) -> float:
    """Adaptive cost, in bits, of ``values`` under a prior of total weight 1 spread over the
    alphabet (the plane level of a one-context model)."""
    if not values.size:
        return 0.0
    counts = np.bincount(values)
    counts = counts[counts > 0]
    alpha = 1.0 / max(alphabet, 1)
    nats = math.lgamma(values.size + 1.0) - sum(math.lgamma(c + alpha) - math.lgamma(alpha) for c in counts.tolist())
    return nats / math.log(2)


def _fresh_bits(values: np.ndarray, palette_size: int) -> float:
    """Adaptive cost, in bits, of escaped literals ``values`` (raster order) coded fresh: a flag each,
    and the index of every colour that was used before under counts that include first uses (the
    prior of ``_sequential_bits``).  Order-free: any palette order gives the same figure."""
    if not values.size:
        return 0.0
    order = np.argsort(values, kind="stable")
    seen_before = np.empty(values.size, dtype=np.int64)
    seen_before[order] = _position_in_run(values[order])  # earlier escapes of the same colour
    old = seen_before > 0
    position = np.flatnonzero(old)  # escapes before it, of any colour
    bits = float(np.log2(position + 1.0).sum() - np.log2(seen_before[old] + 1.0 / palette_size).sum())
    return bits + _sequential_bits(old.astype(np.int64), 2)


def literal_costs(idx: np.ndarray, literal: np.ndarray, palette_size: int) -> dict[int, float]:
    """Encoder: about what the literals (``literal`` mask over the index plane ``idx``) cost, in
    bytes, per literal coding without the contexts of the colour above (plain, cache, fresh,
    cache + fresh; ranks counted per list length), palette aside."""
    lits = idx[literal]
    bins, ranks = literal_ranks(idx, literal, palette_size)
    escaped = lits[ranks == CACHE_SIZE]
    rank_bits = sum(_sequential_bits(ranks[bins == b], CACHE_SIZE + 1) for b in np.unique(bins).tolist())
    return {
        LITERALS_PLAIN: _sequential_bits(lits, palette_size) / 8,
        LITERALS_CACHE: (rank_bits + _sequential_bits(escaped, palette_size)) / 8,
        LITERALS_FRESH: _fresh_bits(lits, palette_size) / 8,
        LITERALS_CACHE | LITERALS_FRESH: (rank_bits + _fresh_bits(escaped, palette_size)) / 8,
    }


def _counts(values: np.ndarray) -> np.ndarray:
    """``np.unique(values, return_counts=True)[1]`` (the same counts in the same order) for
    non-negative integers; by counting when their range is small (sorting millions of context
    numbers cost seconds on large screenshots)."""
    if values.size and int(values.min()) >= 0 and int(values.max()) < max(1 << 16, 4 * values.size):
        table = np.bincount(values)
        return table[table > 0]
    return np.unique(values, return_counts=True)[1]


def scan_bytes(index: np.ndarray, offsets: list[tuple[int, int]], scan=None, enough: float = math.inf) -> float:
    """Encoder: about what the plain raster scan (lz = 0) costs, in bytes, palette aside: its
    literals' adaptive cost (plain or cached, the cheaper) plus the static entropy of its symbols
    given their first-phase context.  Measured within −15 … +25 % of the coded size on dev art.
    ``scan``: ``symbols(index, offsets, LZ_OFF)`` (offsets inside the image) if the caller has it;
    an estimate with plain literals that is at most ``enough`` is returned without the cache's."""
    height, width = index.shape
    kept = [(dy, dx) for dy, dx in offsets if dy < height and abs(dx) < width]
    idx, sym, ctx, _ = scan if scan is not None else symbols(index, kept, LZ_OFF)
    palette = int(index.max(initial=0)) + 1
    literal = sym == Symbols(len(kept), LZ_OFF).literal
    joint = _counts(ctx.ravel() * (int(sym.max(initial=0)) + 1) + sym.ravel())
    marginal = _counts(ctx.ravel())
    symbol_bits = float((marginal * np.log2(marginal)).sum() - (joint * np.log2(joint)).sum())
    plain = _sequential_bits(idx[literal], palette) / 8 + symbol_bits / 8
    if plain <= enough:
        return plain
    return min(literal_costs(idx, literal, palette).values()) + symbol_bits / 8


def _decode_literals(models: _Models, dec, bins: np.ndarray, palette_size: int) -> np.ndarray:
    lits = models.literal.decode(dec, 0, bins)
    if lits.max() >= palette_size:
        raise ContainerError("lossless payload: palette index out of range")
    return lits


def _decode_escapes(models: _Models, dec, bins: np.ndarray, palette_size: int, used: int) -> tuple[np.ndarray, int]:
    """A row's escaped literals (their literal bins ``bins``): plain indices (``used`` < 0), or
    fresh (flags, then the indices of the colours used before).  Returns them and the new number
    of colours used."""
    count = bins.size
    if used < 0:
        return _decode_literals(models, dec, bins, palette_size), used
    first = models.fresh.decode(dec, 0, np.zeros(count, np.int64)).astype(bool)
    new = int(first.sum())
    if used + new > palette_size:
        raise ContainerError("lossless payload: more colours are used than the palette has")
    lits = np.empty(count, dtype=np.int64)
    fresh_values = used + np.arange(new)
    lits[first] = fresh_values
    models.literal.observe(fresh_values, None if models.literal_bins == 1 else bins[first])
    if new < count:
        old = _decode_literals(models, dec, bins[~first], palette_size)
        seen = used + np.cumsum(first)[~first]  # colours used before each of them
        if np.any(old >= seen):
            raise ContainerError("lossless payload: a literal names a colour before its first use")
        lits[~first] = old
    return lits, used + new


def _read_covered(value: np.ndarray, src: np.ndarray, at: np.ndarray, row_start: int,
                  flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Long matches, the row's covered columns ``at`` (sources ``src`` by column, raster
    positions): a source in an earlier row is read into ``value``; one in this row is a pointer.
    Returns the pointer columns and the columns they point to."""
    s = src[at]
    early = s < row_start
    value[at[early]] = flat[s[early]]
    return at[~early], s[~early] - row_start


def _follow(ptr: np.ndarray) -> np.ndarray:
    """Pointer doubling: every position's pointer followed to its end (pointers go left)."""
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            return ptr
        ptr = nxt


def decode_raster(dec, height: int, width: int, palette_size: int, offsets: list[tuple[int, int]],
                  lz: int = LZ_CARRY, literals: int = LITERALS_PLAIN, contexts: int = CONTEXTS_PLAIN,
                  long_count: int = 0) -> np.ndarray:
    """The index plane; ``long_count``: the number of long matches (version ≥ 9, lz = 0)."""
    idx = np.zeros((height, width), dtype=np.int64)
    cache = LiteralCache(palette_size) if literals & LITERALS_CACHE else None
    used = 0 if literals & LITERALS_FRESH else -1
    long = long_count > 0
    if long and lz != LZ_OFF:
        raise ContainerError("lossless payload: long matches need free copies off")
    syms = Symbols(len(offsets), lz, long)
    models = _Models(syms, palette_size, height, width, contexts, literals)
    sources = _decode_long(models, dec, long_count, height, width).sources(height * width) if long else None
    flat = idx.reshape(-1)
    sym_prev = np.zeros(width, dtype=np.int64)
    sym_prev2 = None
    # The copy offsets: the payload's K, then each new offset as it decodes.  A buffer that doubles
    # (not a concatenation per row, which costs rows x entries: a stream of new offsets, cheap to
    # code once the models adapt, would make decoding quadratic in the image size).
    table = np.array(offsets, dtype=np.int64).reshape(-1, 2)
    table_len = table.shape[0]
    ids_prev = np.full(width, -1, dtype=np.int64)
    x = np.arange(width)
    east = np.empty((width + 1) // 2, dtype=np.int64)
    # The row above padded with −1 (a pixel that does not exist) on both sides: N, NE and NW are
    # views, and comparisons with a missing pixel come out unequal by themselves.
    pad = np.full(width + 2, -1, dtype=np.int64)
    missing = np.full(width, -1, dtype=np.int64)
    first_ctx = np.full(width, syms.none * PATTERNS, dtype=np.int64)
    covered = np.zeros(width, dtype=bool)
    # Per row, how many pixels long matches cover (all: the row is read from its sources alone).
    cover_counts = (sources.reshape(height, width) >= 0).sum(axis=1).tolist() if long else [0] * height
    matched_row = np.full(width, syms.matched, dtype=np.int64)
    offset_end = SYM_OFFSET + len(offsets)
    for y in range(height):
        n_cov = cover_counts[y]
        if n_cov:
            src = sources[y * width : (y + 1) * width]
            covered = src >= 0
        if n_cov == width:
            # Every pixel is covered: no symbol is coded (each phase's call would be empty), and
            # its value comes from its source: read in an earlier row, followed in this one.
            value = missing.copy()
            same, to = _read_covered(value, src, x, y * width, flat)
            if same.size:
                ptr = x.copy()
                ptr[same] = to
                value = value[_follow(ptr)]
            if value.min() < 0:
                raise ContainerError("lossless payload: a pixel names a neighbour that does not exist")
            idx[y] = value
            sym_prev2 = sym_prev if y else None
            sym_prev = matched_row
            ids_prev = missing
            continue
        if y:
            pad[1:-1] = idx[y - 1]
            n, ne, nw = pad[1:-1], pad[2:], pad[:-2]
            nn = idx[y - 2] if y >= 2 else missing
            e_ne, e_nw, e_nn = n == ne, n == nw, n == nn
            ctx = sym_prev * PATTERNS + e_nw + 2 * e_ne + 4 * e_nn
        else:
            ctx = first_ctx
        sym = np.zeros(width, dtype=np.int64)
        even = sym[0::2]
        if contexts == CONTEXTS_ROWS:
            extra = row_contexts(sym_prev, sym_prev2)[0::2] if y else 3
            first = ctx[0::2] * ROW_CONTEXTS + extra
        else:
            first = ctx[0::2]
        if n_cov:
            free = ~covered[0::2]
            even[free] = models.phases[0].decode(dec, 0, first[free])
            even[~free] = syms.matched
        else:
            even[:] = models.phases[0].decode(dec, 0, first)
        if width > 1:
            # Odd columns: (symbol left, symbol right or "none") · PATTERNS + pattern.
            east[: even.size - 1] = even[1:]
            east[even.size - 1] = syms.none
            odd_ctx = (even[: width // 2] * syms.classes + east[: width // 2]) * PATTERNS + ctx[1::2] % PATTERNS
            if n_cov:
                odd = sym[1::2]
                free = ~covered[1::2]
                odd[free] = models.phases[1].decode(dec, 0, odd_ctx[free])
                odd[~free] = syms.matched
            else:
                sym[1::2] = models.phases[1].decode(dec, 0, odd_ctx)
        if sym[0] == SYM_LEFT:
            raise ContainerError("lossless payload: the first pixel of a row repeats its left neighbour")
        # Which kinds of symbol the row holds: the work for a kind it lacks is skipped (a row's
        # numpy calls cost about the same whatever its width, and most rows use few kinds).
        kinds = np.bincount(sym, minlength=syms.classes).tolist()
        has_left = kinds[SYM_LEFT] > 0
        is_left = sym == SYM_LEFT if has_left else None
        if y and kinds[SYM_ABOVE + 1] + kinds[SYM_ABOVE + 2] + kinds[SYM_ABOVE + 3]:
            # The r-th distinct pixel above (N always exists here; NE, NW, NN are −1 where missing).
            new1 = (ne >= 0) & ~e_ne
            new2 = (nw >= 0) & ~e_nw & (ne != nw)
            new3 = (nn >= 0) & ~e_nn & (ne != nn) & (nw != nn)
            value = np.where(sym == SYM_ABOVE, n, -1)
            value = np.where(new1 & (sym == SYM_ABOVE + 1), ne, value)
            rank = SYM_ABOVE + 1 + new1
            value = np.where(new2 & (sym == rank), nw, value)
            value = np.where(new3 & (sym == rank + new2), nn, value)
        elif y and kinds[SYM_ABOVE]:
            value = np.where(sym == SYM_ABOVE, n, -1)
        else:
            value = missing.copy()
        has_offsets = offsets and sum(kinds[SYM_OFFSET:offset_end]) > 0
        if has_offsets or lz:
            ids = np.where((sym >= SYM_OFFSET) & (sym < offset_end), sym - SYM_OFFSET, -1)
        else:
            ids = missing  # (no pixel of the row copies with an offset)
        if lz:
            new_at = np.flatnonzero(sym == syms.new)
            if new_at.size:
                dy, dx = _decode_offsets(models.dy, models.dx, dec, new_at.size)
                if np.any(dy > y) or np.any((dy == 0) & (dx <= 0)) or np.any(np.abs(dx) >= width):
                    raise ContainerError("lossless payload: a new copy offset is invalid")
                ids[new_at] = table_len + np.arange(new_at.size)
                if table_len + new_at.size > table.shape[0]:
                    grown = np.empty((max(2 * table.shape[0], table_len + new_at.size, 64), 2), dtype=np.int64)
                    grown[:table_len] = table[:table_len]
                    table = grown
                table[table_len:table_len + new_at.size, 0] = dy
                table[table_len:table_len + new_at.size, 1] = dx
                table_len += new_at.size
            up = np.flatnonzero(sym == syms.inherit_above)
            ids[up] = ids_prev[up]
            if up.size and ids[up].min() < 0:
                raise ContainerError("lossless payload: the pixel above has no copy offset to take")
            copies = ids >= 0
            carry = (sym < SYM_OFFSET) | (sym == syms.inherit_left) if lz == LZ_CARRY else sym == syms.inherit_left
            carry[0] = False
            if sym[0] == syms.inherit_left:
                raise ContainerError("lossless payload: the first pixel of a row continues a copy")
            ids = ids[np.maximum.accumulate(np.where(carry, 0, x))]  # carried from the left
            lefts = sym == syms.inherit_left
            copies |= lefts
            if np.any(ids[lefts] < 0):
                raise ContainerError("lossless payload: a pixel continues a copy that its left neighbour lacks")
            at = np.flatnonzero(copies)
        elif has_offsets:
            at = np.flatnonzero(ids >= 0)
        else:
            at = None
        near = None
        if at is not None and at.size:
            dy, dx = table[ids[at], 0], table[ids[at], 1]
            sx = at - dx
            if np.any(dy > y) or sx.min() < 0 or sx.max() >= width:
                raise ContainerError("lossless payload: a copy offset points outside the image")
            far = dy > 0
            value[at[far]] = idx[y - dy[far], sx[far]]
            near = at[~far]
            if not near.size:
                near = None
        if kinds[syms.literal]:
            lit_at = np.flatnonzero(sym == syms.literal)
            above_row = idx[y - 1] if y else None
            if cache is None:
                bins = literal_contexts(above_row, lit_at, models.literal_bins)
                value[lit_at], used = _decode_escapes(models, dec, bins, palette_size, used)
            else:
                above = cache.contexts(above_row, lit_at)
                ranks = models.rank.decode(dec, 0, cache.length[above])
                escape = ranks == CACHE_SIZE
                hit = ~escape
                value[lit_at[hit]] = cache.lookup(above[hit], ranks[hit])
                if escape.any():
                    bins = literal_contexts(above_row, lit_at[escape], models.literal_bins)
                    lits, used = _decode_escapes(models, dec, bins, palette_size, used)
                    value[lit_at[escape]] = lits
                    cache.update(above[escape], lits)
        same = None
        if n_cov:
            same, to = _read_covered(value, src, np.flatnonzero(covered), y * width, flat)
            if not same.size:
                same = None
        if same is not None or near is not None:
            ptr = x.copy()
            if has_left:
                ptr[is_left] = x[is_left] - 1
            if near is not None:
                ptr[near] = sx[~far]
            if same is not None:
                ptr[same] = to
            value = value[_follow(ptr)]
        elif has_left:
            value = value[np.maximum.accumulate(np.where(is_left, 0, x))]  # runs of left pixels
        if value.min() < 0:
            raise ContainerError("lossless payload: a pixel names a neighbour that does not exist")
        idx[y] = value
        sym_prev2 = sym_prev if y else None
        sym_prev = sym
        ids_prev = ids
    return idx.astype(np.int32)
