"""Adaptive context models decoded in bulk (payload version 3).

Instead of per-image static tables, every coded plane keeps symbol counts per
(context group, context bin).  A pass's symbols are coded in *chunks* (in pass
order); all symbols of a chunk use the probabilities implied by the counts of
everything coded before the chunk, so a chunk is decoded with one constriction
call (its symbols sorted by context bin, one probability row per symbol: constriction's
``Categorical`` model family), and the counts are updated after the chunk.
Chunks start small and grow with what the group has seen (size
``max(MIN_CHUNK, seen(group) // CHUNK_SHARE)``), so a group learns quickly at first.

Probabilities blend three levels (all elementwise IEEE float64 on integer
counts, identical in encoder and decoder):

* ``p0(s) = (n(s)·A + GAMMA) / ((N + GAMMA)·A)`` over the whole plane;
* ``p1(s | b) = (n_b(s) + ALPHA_BIN·p0(s)) / (N_b + ALPHA_BIN)`` per bin, all groups;
* ``p(s | g, b) = (n_gb(s) + ALPHA_GROUP·p1(s | b)) / (N_gb + ALPHA_GROUP)``.

No table is transmitted; sparse contexts borrow from their parents.  The five constants are
the payload version's ``Rates`` (``rates_for``); a model takes those in force where it is made
(``using``), so one encoder or decoder call holds one set throughout.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import constriction
import numpy as np

Categorical = constriction.stream.model.Categorical


@dataclass(frozen=True)
class Rates:
    """How fast the counts adapt: the chunk schedule and the blend's pseudo-counts."""

    min_chunk: int  # MIN_CHUNK: the smallest chunk
    chunk_share: int  # CHUNK_SHARE: a chunk is at most 1/chunk_share of what its group has seen
    gamma: int  # GAMMA: pseudo-count spread evenly over the alphabet at the plane level
    alpha_bin: int  # ALPHA_BIN: weight of the plane level in a bin
    alpha_group: int  # ALPHA_GROUP: weight of the bin level in a (group, bin)


@dataclass(frozen=True)
class RateSet:
    """A payload version's rates, per family of models."""

    planes: Rates  # the plane section's models (§5: predictive, interlaced palette, match plane)
    raster: Rates  # the palette raster's and the palette-in-context models (§3a, §3b)

    def of(self, family: str) -> Rates:
        return self.planes if family == PLANES else self.raster


PLANES, RASTER = "planes", "raster"
_OLD = Rates(min_chunk=64, chunk_share=8, gamma=1, alpha_bin=32, alpha_group=32)
RATES_V3 = RateSet(planes=_OLD, raster=_OLD)  # versions 3 … 10
# Version 11 (docs/lossless.md §6 "Session 21"): a flatter plane level and bins that trust their
# own counts sooner; in the raster scan, whose rows are short calls, also small first chunks and
# finer chunks later.  Every dev image at effort 1 against lossless WebP (with session 21's two
# encoder changes): screenshots 1.021 → 0.991, comics 0.943 → 0.916, vector 0.979 → 0.964, pixel
# art 0.950 → 0.926, line 0.896 → 0.892.  The plane section keeps coarser chunks: its 7 groups ×
# planes each paid the small first chunks (a Kodak photo 1 014 → 4 278 chunks, decoding 1.4 →
# 0.8 MP/s, for 0.25 %).
RATES_V11 = RateSet(planes=Rates(min_chunk=32, chunk_share=8, gamma=64, alpha_bin=32, alpha_group=16),
                    raster=Rates(min_chunk=8, chunk_share=32, gamma=64, alpha_bin=32, alpha_group=16))
RATES_VERSION = 11  # the first payload version with RATES_V11

_RATES: contextvars.ContextVar[RateSet] = contextvars.ContextVar("udic_lossless_rates", default=RATES_V11)


def rates_for(version: int) -> RateSet:
    """The adaptation constants of payload ``version``."""
    return RATES_V11 if version >= RATES_VERSION else RATES_V3


def current() -> RateSet:
    """The rates that a model made now would adapt at (encoder caches key on them)."""
    return _RATES.get()


@contextlib.contextmanager
def using(rates: RateSet) -> Iterator[None]:
    """Models made inside the block adapt at ``rates`` (per thread and task: batch encodes run
    in threads)."""
    token = _RATES.set(rates)
    try:
        yield
    finally:
        _RATES.reset(token)


DENSE_LIMIT = 8192  # models with at most this many (bin, symbol) counts blend and update all bins at once
SOLO = 48  # in a large chunk, a bin with at least this many symbols is one constriction call of its own
SMALL_CHUNK = 512  # a chunk of at most this many symbols (alphabet ≤ SMALL_ALPHABET) is one call
SMALL_ALPHABET = 80
BULK_ELEMENTS = 1 << 21  # encoder: probability rows worked out at once (bounds the memory)
# ... for a one-context model (a palette's literal indices: one row of P a chunk, hundreds of
# chunks): blocks that stay in the cache.  Pixel-art sheets (P 3,000-7,400) encoded 11 % faster
# with this than with BULK_ELEMENTS; models with bins lose by it (more blocks, each with its sorts).
SINGLE_BULK_ELEMENTS = 1 << 14
ROW_PER_SYMBOL = 1 << 12  # decoder: a chunk with at most this many symbols × alphabet gets a row per symbol


def _runs(k: np.ndarray) -> list[tuple[int, int]]:
    """Calls for a chunk's bins (ascending; ``k`` symbols each): (first, last + 1) bin positions;
    a bin with ≥ SOLO symbols alone (one model), runs of the others together (model family).
    Only the speed depends on this: the stream is the same either way."""
    if k.size == 1:
        return [(0, 1)]
    solo = np.flatnonzero(k >= SOLO).tolist()
    if not solo:
        return [(0, k.size)]
    out = []
    at = 0
    for i in solo + [k.size]:
        if i > at:
            out.append((at, i))
        if i < k.size:
            out.append((i, i + 1))
        at = i + 1
    return out


class AdaptiveModel:
    """Counts of one coded plane: ``groups`` × ``bins`` contexts over ``alphabet`` symbols."""

    def __init__(self, groups: int, bins: int, alphabet: int, parent: np.ndarray | None = None,
                 family: str = RASTER) -> None:
        """``parent`` (raster scan, match plane): per bin, the class whose counts (over all bins of
        the class) replace the per-bin middle level of the blend; None: the middle level is the bin
        itself.  Classes must not decrease with the bin.  ``family``: whose rates it adapts at
        (PLANES or RASTER)."""
        self.groups = groups
        self.bins = bins
        self.alphabet = a = max(2, alphabet)
        self.rates = _RATES.get().of(family)
        self.parent = parent
        if parent is not None and parent.size > 1 and np.any(np.diff(parent) < 0):
            raise ValueError("bin classes must not decrease")
        # Counts are whole numbers held as float64 (exact below 2**53): the blend reads them into
        # float arithmetic, and mixed int/float operands cost numpy a conversion pass per operation
        # (the decoder blends a few rows per call, thousands of calls per image).
        self.counts = np.zeros((groups, bins, a), dtype=np.float64)
        self.count_tot = np.zeros((groups, bins), dtype=np.float64)  # = counts.sum(axis=2)
        if parent is None:
            self.bin_counts = np.zeros((bins, a), dtype=np.float64)
            self.bin_tot = np.zeros(bins, dtype=np.float64)
        else:
            classes = int(parent.max()) + 1
            self.class_counts = np.zeros((classes, a), dtype=np.float64)
            self.class_tot = np.zeros(classes, dtype=np.float64)
            self._class_starts = np.flatnonzero(np.concatenate([[True], parent[1:] != parent[:-1]]))
        self.total = np.zeros(a, dtype=np.float64)
        self._single = groups == 1 and bins == 1 and parent is None
        if self._single:
            # One context: every level of the blend holds the plane's counts, so the per-(group,
            # bin) and per-bin arrays are views of the plane's (one update instead of three).
            self.counts, self.bin_counts = self.total.reshape(1, 1, a), self.total.reshape(1, a)
            self.bin_tot = np.zeros(1, dtype=np.float64)
            self.count_tot = self.bin_tot.reshape(1, 1)
        self.n_total = 0  # = total.sum()
        self.seen = [0] * groups
        self._sort_type = np.uint8 if bins <= 256 else np.uint16 if bins <= 65536 else np.int64
        # Small models blend and update all bins at once (fewer, larger numpy operations).
        self._dense = bins * a <= DENSE_LIMIT
        self._small = a <= SMALL_ALPHABET
        # encoder: calls not yet coded (group, bins, symbols, coded: False = only counted, ``encode_observed``)
        self._pending: list[tuple[int, np.ndarray, np.ndarray, bool]] = []

    def probabilities(self, group: int, bins: np.ndarray | None) -> np.ndarray:
        """(len(bins), alphabet) float64 probabilities of those bins (None: all bins) for the next
        chunk of ``group``.  Row sums are kept as counts are added, so that the numbers are exactly
        those of the formulas in the module docstring."""
        a, r = self.alphabet, self.rates
        p0 = self.total * a
        p0 += r.gamma
        p0 /= float((self.n_total + r.gamma) * a)
        if bins is None:
            p1 = self.bin_counts + r.alpha_bin * p0 if self.parent is None else \
                self.class_counts[self.parent] + r.alpha_bin * p0
            mid_tot = self.bin_tot if self.parent is None else self.class_tot[self.parent]
            cg, cg_tot = self.counts[group], self.count_tot[group]
        else:
            # (``take`` along axis 0: numpy's fancy indexing of rows costs ~4x as much per call,
            # and the decoder makes one such call per raster row and phase)
            if self.parent is None:
                p1, mid_tot = self.bin_counts.take(bins, axis=0), self.bin_tot[bins]
            else:
                cls = self.parent[bins]
                p1, mid_tot = self.class_counts.take(cls, axis=0), self.class_tot[cls]
            p1 += r.alpha_bin * p0  # (p1 is a gathered copy)
            cg, cg_tot = self.counts[group].take(bins, axis=0), self.count_tot[group][bins]
        # The same IEEE operations, in the same order, as the module docstring's formulas (and the
        # encoder's ``_bulk``); in place where the operand is a temporary.
        p1 /= (mid_tot + r.alpha_bin)[:, None]
        p1 *= r.alpha_group
        p1 += cg
        p1 /= (cg_tot + r.alpha_group)[:, None]
        return p1

    def _plan(self, group: int, c: np.ndarray):
        """A chunk's decode order (positions sorted by bin, stable), its symbols per bin (all
        bins), the bins present (ascending), their counts, probability rows and constriction calls."""
        order = np.argsort(c.astype(self._sort_type), kind="stable")
        per_bin = np.bincount(c, minlength=self.bins)
        present = per_bin.nonzero()[0]
        k = per_bin[present]
        if self._dense and 2 * present.size >= self.bins:
            probs = self.probabilities(group, None).take(present, axis=0)
        else:
            probs = self.probabilities(group, present)
        if present.size == 1:
            runs = [(0, 1)]
        elif c.size <= SMALL_CHUNK and self._small:
            runs = [(0, present.size)]
        else:
            runs = _runs(k)
        return order, per_bin, present, k, probs, runs

    def _add(self, group: int, c: np.ndarray, sym: np.ndarray, per_bin: np.ndarray, present: np.ndarray,
             k: np.ndarray, ordered: np.ndarray) -> None:
        """Adds a chunk's symbols: ``c``/``sym`` in any order, ``ordered`` = ``sym`` sorted by bin."""
        a = self.alphabet
        if self._single:
            self._add_single(np.bincount(sym, minlength=a), c.size)
            self.seen[group] += c.size
            return
        self.total += np.bincount(sym, minlength=a)
        self.count_tot[group] += per_bin
        if self._dense:
            # (float once: each count array below would otherwise convert the integers itself)
            hist = np.bincount(c * a + sym, minlength=self.bins * a).astype(np.float64).reshape(self.bins, a)
            self.counts[group] += hist
            if self.parent is None:
                self.bin_counts += hist
                self.bin_tot += per_bin
            else:
                self.class_counts += np.add.reduceat(hist, self._class_starts, axis=0)
                self.class_tot += np.add.reduceat(per_bin, self._class_starts)
        else:
            if present.size == 1:
                hist = np.bincount(ordered, minlength=a)[None]
            else:
                rows = np.repeat(np.arange(present.size), k)
                hist = np.bincount(rows * a + ordered, minlength=present.size * a).reshape(present.size, a)
            self.counts[group, present] += hist
            if self.parent is None:
                self.bin_counts[present] += hist
                self.bin_tot[present] += k
            else:
                cls = self.parent[present]
                if cls.size > 1:
                    starts = np.flatnonzero(np.concatenate([[True], cls[1:] != cls[:-1]]))
                    if starts.size < cls.size:
                        hist = np.add.reduceat(hist, starts, axis=0)
                        k = np.add.reduceat(k, starts)
                        cls = cls[starts]
                self.class_counts[cls] += hist
                self.class_tot[cls] += k
        self.n_total += c.size
        self.seen[group] += c.size

    def _chunk(self, group: int) -> int:
        """The size of ``group``'s next chunk."""
        return max(self.rates.min_chunk, self.seen[group] // self.rates.chunk_share)

    def chunks(self, group: int, count: int):
        """Yields (start, end) of the chunks of ``count`` symbols; add each chunk's symbols before
        asking for the next."""
        start = 0
        while start < count:
            end = min(count, start + self._chunk(group))
            yield start, end
            start = end

    def decode(self, dec, group: int, ctx: np.ndarray) -> np.ndarray:
        """Inverse of ``encode``: the symbols of the pixels with context bins ``ctx`` (pass order)."""
        if self._single:
            return self._decode_single(dec, ctx.size)
        ctx = ctx.astype(np.int64, copy=False)
        count = ctx.size
        if 0 < count and count * self.alphabet <= ROW_PER_SYMBOL and count <= self._chunk(group):
            return self._decode_per_symbol(dec, group, ctx)  # one small chunk (most raster calls)
        out = np.empty(count, dtype=np.int64)
        start = 0
        while start < count:
            end = min(count, start + self._chunk(group))
            c = ctx[start:end]
            if (end - start) * self.alphabet <= ROW_PER_SYMBOL:
                out[start:end] = self._decode_per_symbol(dec, group, c)
                start = end
                continue
            order, per_bin, present, k, probs, runs = self._plan(group, c)
            ordered = dec.rows(probs, k, runs)
            if start:
                order += start
            out[order] = ordered
            self._add(group, c, out[start:end], per_bin, present, k, ordered)
            start = end
        return out

    def _decode_per_symbol(self, dec, group: int, c: np.ndarray) -> np.ndarray:
        """One small chunk of ``decode``: each symbol's probability row worked out on its own
        (``probabilities`` of the symbols' bins, repeats and all), so that no per-bin bookkeeping
        is needed, and its counts added symbol by symbol: a dozen numpy calls instead of ~40, and
        the raster scan makes several such chunks per image row."""
        order = np.argsort(c, kind="stable")
        cs = c[order]
        ordered = dec.per_symbol(self.probabilities(group, cs)).astype(np.int64)
        if self.parent is None:
            mid_at, mid_counts, mid_tot = cs, self.bin_counts, self.bin_tot
        else:
            mid_at, mid_counts, mid_tot = self.parent[cs], self.class_counts, self.class_tot
        self.total += np.bincount(ordered, minlength=self.alphabet)
        np.add.at(self.counts[group], (cs, ordered), 1.0)
        np.add.at(self.count_tot[group], cs, 1.0)
        np.add.at(mid_counts, (mid_at, ordered), 1.0)
        np.add.at(mid_tot, mid_at, 1.0)
        self.n_total += c.size
        self.seen[group] += c.size
        out = np.empty(c.size, dtype=np.int64)
        out[order] = ordered
        return out

    def _decode_single(self, dec, count: int) -> np.ndarray:
        """``decode`` of a one-context model (literals, colour numbers, offsets): every level of
        the blend holds the plane's counts, so a chunk is one row and one call."""
        a, r = self.alphabet, self.rates
        parts = []
        for start, end in self.chunks(0, count):
            n = self.n_total
            p0 = (self.total * a + r.gamma) / float((n + r.gamma) * a)
            p1 = (self.total + r.alpha_bin * p0) / (n + r.alpha_bin)
            row = (self.total + r.alpha_group * p1) / (n + r.alpha_group)
            sym = dec.single(row, end - start)
            self._add_single(np.bincount(sym, minlength=a), end - start)
            self.seen[0] += end - start
            parts.append(sym)
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)).astype(np.int64)

    def observe(self, values: np.ndarray, bins: np.ndarray | None = None) -> None:
        """Decoder: count ``values`` (in context ``bins``; None: a one-context model) without coding
        them.  Palette raster literals flagged as a colour's first use are known without their
        index; counting them keeps the index model from paying a first-occurrence price when the
        colour comes back.  The chunk schedule (``seen``) counts coded symbols only."""
        if not values.size:
            return
        if bins is None:
            if not self._single:
                raise ValueError("a model with contexts counts symbols it does not code by their bins")
            self._add_single(np.bincount(values, minlength=self.alphabet), values.size)
            return
        c = bins.astype(np.int64, copy=False)
        order = np.argsort(c, kind="stable")
        per_bin = np.bincount(c, minlength=self.bins)
        present = per_bin.nonzero()[0]
        self._add(0, c, values, per_bin, present, per_bin[present], values[order])
        self.seen[0] -= c.size

    def _add_single(self, hist: np.ndarray, n: int) -> None:
        """Count ``n`` symbols (histogram ``hist``) of a one-context model at every level of the
        blend: the decoder (per chunk) and the encoder (per block) must update alike."""
        self.total += hist  # (``counts`` and ``bin_counts`` are views of it, ``count_tot`` of ``bin_tot``)
        self.bin_tot += n
        self.n_total += n

    # --- encoder: all calls of a model are recorded, then coded in bulk ----------------------------

    def encode(self, ops, group: int, ctx: np.ndarray, sym: np.ndarray) -> None:
        """Appends the symbols (pass order, with their context bins) to ``ops`` in decode order.

        The encoder knows every symbol in advance, so nothing is computed here: ``ops`` gets a
        placeholder, and when the stream is written (``OpList.finish``) ``flush`` works out every
        chunk's probabilities at once from running sums, the same numbers the decoder computes
        chunk by chunk."""
        ctx = ctx.astype(np.int64)
        sym = sym.astype(np.int64)
        if sym.size and (sym.min() < 0 or sym.max() >= self.alphabet):
            raise ValueError("symbol outside the plane's alphabet")
        if ctx.size != sym.size:
            raise ValueError("one context bin per symbol")
        if sym.size:
            ops.defer(self, len(self._pending))
            self._pending.append((group, ctx, sym, True))

    def encode_observed(self, values: np.ndarray, bins: np.ndarray | None = None) -> None:
        """Encoder side of ``observe``: counted in call order with the coded symbols, never written."""
        if bins is None and not (self.bins == 1 and self.groups == 1 and self.parent is None):
            raise ValueError("a model with contexts counts symbols it does not code by their bins")
        values = values.astype(np.int64)
        if values.size and (values.min() < 0 or values.max() >= self.alphabet):
            raise ValueError("symbol outside the plane's alphabet")
        if bins is not None and bins.size != values.size:
            raise ValueError("one context bin per symbol")
        if values.size:
            ctx = np.zeros(values.size, np.int64) if bins is None else bins.astype(np.int64)
            self._pending.append((0, ctx, values, False))

    def flush(self) -> list[list[tuple]]:
        """Per recorded ``encode`` call, its chunks as (symbols sorted by bin, probability rows of
        the bins present, their symbol counts, constriction calls); the model's counts then include
        everything recorded."""
        calls, self._pending = self._pending, []
        results: list[list[tuple]] = [[] for _ in calls]
        if not calls:
            return results
        if self.bins > 1 and not self._small and not self._dense:
            return self._flush_in_turn(calls, results)
        ctx_all = np.concatenate([c for _, c, _, _ in calls])
        sym_all = np.concatenate([s for _, _, s, _ in calls])
        # The chunk schedule depends only on the sizes (of coded calls: an observed call is one
        # block of counts that moves no chunk boundary).
        bounds, owner, groups = [0], [], []
        for i, (group, ctx, _, coded) in enumerate(calls):
            if not coded:
                bounds.append(bounds[-1] + ctx.size)
                owner.append(i)
                groups.append(group)
                continue
            start, n = 0, ctx.size
            while start < n:
                end = min(n, start + self._chunk(group))
                self.seen[group] += end - start
                bounds.append(bounds[-1] + end - start)
                owner.append(i)
                groups.append(group)
                start = end
        first = 0
        budget = 0
        limit = SINGLE_BULK_ELEMENTS if self._single else BULK_ELEMENTS
        for t in range(len(owner)):
            budget += min(bounds[t + 1] - bounds[t], self.bins) * self.alphabet
            if budget >= limit or t == len(owner) - 1:
                self._bulk(bounds[first : t + 2], owner[first : t + 1], groups[first : t + 1],
                           ctx_all, sym_all, results, [calls[i][3] for i in owner[first : t + 1]])
                first, budget = t + 1, 0
        return results

    def _flush_in_turn(self, calls: list[tuple], results: list[list[tuple]]) -> list[list[tuple]]:
        """``flush`` chunk by chunk, as the decoder works (the literals above: a wide alphabet in
        many bins, where the running sums over every chunk's (bin, symbol) counts cost many times
        more than the probability rows of the bins present)."""
        for i, (group, ctx, sym, coded) in enumerate(calls):
            if not coded:
                self.observe(sym, ctx)
                continue
            for start, end in self.chunks(group, ctx.size):
                c = ctx[start:end]
                order, per_bin, present, k, probs, runs = self._plan(group, c)
                ordered = sym[start:end][order]
                results[i].append((ordered, probs, k, runs))
                self._add(group, c, sym[start:end], per_bin, present, k, ordered)
        return results

    def _bulk(self, bounds: list[int], owner: list[int], groups: list[int], ctx_all: np.ndarray,
              sym_all: np.ndarray, results: list[list[tuple]], coded: list[bool]) -> None:
        a, nbins, r = self.alphabet, self.bins, self.rates
        lo, hi = bounds[0], bounds[-1]
        sizes = np.diff(np.array(bounds, dtype=np.int64))
        chunks = sizes.size
        c, s = ctx_all[lo:hi], sym_all[lo:hi]
        cid = np.repeat(np.arange(chunks), sizes)
        # Plane level: totals before each chunk.
        chunk_hist = np.bincount(cid * a + s, minlength=chunks * a).reshape(chunks, a)
        before = np.cumsum(chunk_hist, axis=0) - chunk_hist + self.total
        n_before = np.cumsum(sizes) - sizes + self.n_total
        p0 = (before * a + r.gamma) / ((n_before + r.gamma) * a).astype(np.float64)[:, None]
        if nbins == 1 and self.groups == 1 and self.parent is None:
            # One context: every level holds the same counts (the plane's), one row per chunk.
            tot = n_before[:, None]
            p1 = (before + r.alpha_bin * p0) / (tot + r.alpha_bin)
            probs = (before + r.alpha_group * p1) / (tot + r.alpha_group)
            self._add_single(chunk_hist.sum(axis=0), hi - lo)
            self._emit(sizes, owner, s, probs, sizes, list(range(chunks + 1)), results, coded)
            return
        key = cid * nbins + c
        top = chunks * nbins
        order = np.argsort(key.astype(np.uint16 if top <= 65536 else np.uint32 if top < 1 << 32 else np.int64),
                           kind="stable")
        ordered = s[order]
        okey = key[order]
        starts = np.flatnonzero(np.concatenate([[True], okey[1:] != okey[:-1]]))
        k = np.diff(np.append(starts, okey.size))
        pkey = okey[starts]
        pchunk, pbin = pkey // nbins, pkey % nbins
        pgroup = np.array(groups, dtype=np.int64)[pchunk]
        pairs = pkey.size
        hist = np.bincount(np.repeat(np.arange(pairs), k) * a + ordered, minlength=pairs * a).reshape(pairs, a)
        # Group level: counts of (group, bin) before each chunk.
        gb = pgroup * nbins + pbin
        cg, cg_tot, gb_keys, gb_hist, gb_k = _running(gb, hist, k)
        cg = cg + self.counts.reshape(-1, a).take(gb, axis=0)
        cg_tot = cg_tot + self.count_tot.reshape(-1)[gb]
        # Bin or class level (all groups).
        if self.parent is None:
            mid, mid_tot, mid_keys, mid_hist, mid_k = _running(pbin, hist, k)
            mid = mid + self.bin_counts.take(pbin, axis=0)
            mid_tot = mid_tot + self.bin_tot[pbin]
        else:
            cls = self.parent[pbin]
            cc = pchunk * (int(self.parent[-1]) + 1) + cls  # sorted: pairs go by chunk, then bin
            cc_starts = np.flatnonzero(np.concatenate([[True], cc[1:] != cc[:-1]]))
            cc_of_pair = np.cumsum(np.concatenate([[True], cc[1:] != cc[:-1]])) - 1
            cc_cls = cls[cc_starts]
            run_hist, run_tot, mid_keys, mid_hist, mid_k = _running(
                cc_cls, np.add.reduceat(hist, cc_starts, axis=0), np.add.reduceat(k, cc_starts))
            mid = run_hist.take(cc_of_pair, axis=0) + self.class_counts.take(cls, axis=0)
            mid_tot = run_tot[cc_of_pair] + self.class_tot[cls]
        p1 = (mid + r.alpha_bin * p0.take(pchunk, axis=0)) / (mid_tot + r.alpha_bin)[:, None]
        probs = (cg + r.alpha_group * p1) / (cg_tot + r.alpha_group)[:, None]
        # The model now holds the block.
        self.total += chunk_hist.sum(axis=0)
        self.n_total += hi - lo
        self.counts.reshape(-1, a)[gb_keys] += gb_hist
        self.count_tot.reshape(-1)[gb_keys] += gb_k
        if self.parent is None:
            self.bin_counts[mid_keys] += mid_hist
            self.bin_tot[mid_keys] += mid_k
        else:
            self.class_counts[mid_keys] += mid_hist
            self.class_tot[mid_keys] += mid_k
        self._emit(sizes, owner, ordered, probs, k, np.searchsorted(pchunk, np.arange(chunks + 1)).tolist(), results,
                   coded)

    def _emit(self, sizes: np.ndarray, owner: list[int], ordered: np.ndarray, probs: np.ndarray, k: np.ndarray,
              pair_bounds: list[int], results: list[list[tuple]], coded: list[bool]) -> None:
        """Per coded chunk: its slice of the sorted symbols and of the pair rows."""
        chunks = sizes.size
        at = 0
        for t in range(chunks):
            p_lo, p_hi = pair_bounds[t], pair_bounds[t + 1]
            size = int(sizes[t])
            if not coded[t]:
                at += size
                continue
            kt = k[p_lo:p_hi]
            if p_hi - p_lo == 1:
                runs = [(0, 1)]
            elif size <= SMALL_CHUNK and self._small:
                runs = [(0, p_hi - p_lo)]
            else:
                runs = _runs(kt)
            results[owner[t]].append((ordered[at : at + size], probs[p_lo:p_hi], kt, runs))
            at += size


def _running(keys: np.ndarray, hist: np.ndarray, k: np.ndarray):
    """For rows (in chunk order) with ``keys``: the sum of ``hist`` and of ``k`` over the earlier
    rows with the same key (exclusive running sums), and per distinct key its total."""
    srt = np.argsort(keys, kind="stable")
    ks = keys[srt]
    new = np.concatenate([[True], ks[1:] != ks[:-1]])
    seg = np.flatnonzero(new)
    h = hist.take(srt, axis=0)  # (``take``: row gathers of narrow tables cost 2-6x less than [])
    cum = np.cumsum(h, axis=0)
    excl = cum - h
    excl -= excl.take(seg, axis=0).take(np.cumsum(new) - 1, axis=0)
    kk = k[srt]
    kcum = np.cumsum(kk)
    kexcl = kcum - kk
    kexcl -= kexcl[seg][np.cumsum(new) - 1]
    run_hist = np.empty_like(hist)
    run_hist[srt] = excl
    run_k = np.empty_like(k)
    run_k[srt] = kexcl
    return run_hist, run_k, ks[seg], np.add.reduceat(h, seg, axis=0), np.add.reduceat(kk, seg)
