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

No table is transmitted; sparse contexts borrow from their parents.
"""

from __future__ import annotations

import constriction
import numpy as np

Categorical = constriction.stream.model.Categorical

MIN_CHUNK = 64
CHUNK_SHARE = 8  # a chunk is at most 1/CHUNK_SHARE of what its group has seen (once above MIN_CHUNK)
GAMMA = 1
ALPHA_BIN = 32
ALPHA_GROUP = 32


DENSE_LIMIT = 8192  # models with at most this many (bin, symbol) counts blend and update all bins at once
SOLO = 48  # in a large chunk, a bin with at least this many symbols is one constriction call of its own
SMALL_CHUNK = 512  # a chunk of at most this many symbols (alphabet ≤ SMALL_ALPHABET) is one call
SMALL_ALPHABET = 80


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

    def __init__(self, groups: int, bins: int, alphabet: int, parent: np.ndarray | None = None) -> None:
        """``parent`` (raster scan, match plane): per bin, the class whose counts (over all bins of
        the class) replace the per-bin middle level of the blend; None: the middle level is the bin
        itself.  Classes must not decrease with the bin."""
        self.groups = groups
        self.bins = bins
        self.alphabet = a = max(2, alphabet)
        self.parent = parent
        if parent is not None and parent.size > 1 and np.any(np.diff(parent) < 0):
            raise ValueError("bin classes must not decrease")
        self.counts = np.zeros((groups, bins, a), dtype=np.int64)
        self.count_tot = np.zeros((groups, bins), dtype=np.int64)  # = counts.sum(axis=2)
        if parent is None:
            self.bin_counts = np.zeros((bins, a), dtype=np.int64)
            self.bin_tot = np.zeros(bins, dtype=np.int64)
        else:
            classes = int(parent.max()) + 1
            self.class_counts = np.zeros((classes, a), dtype=np.int64)
            self.class_tot = np.zeros(classes, dtype=np.int64)
            self._class_starts = np.flatnonzero(np.concatenate([[True], parent[1:] != parent[:-1]]))
        self.total = np.zeros(a, dtype=np.int64)
        self.n_total = 0  # = total.sum()
        self.seen = [0] * groups
        self._sort_type = np.uint8 if bins <= 256 else np.uint16 if bins <= 65536 else np.int64
        # Small models blend and update all bins at once (fewer, larger numpy operations).
        self._dense = bins * a <= DENSE_LIMIT
        self._small = a <= SMALL_ALPHABET

    def probabilities(self, group: int, bins: np.ndarray | None) -> np.ndarray:
        """(len(bins), alphabet) float64 probabilities of those bins (None: all bins) for the next
        chunk of ``group``.  Row sums are kept as counts are added, so that the numbers are exactly
        those of the formulas in the module docstring."""
        a = self.alphabet
        p0 = (self.total * a + GAMMA) / float((self.n_total + GAMMA) * a)
        sel = slice(None) if bins is None else bins
        if self.parent is None:
            mid, mid_tot = self.bin_counts[sel], self.bin_tot[sel]
        else:
            cls = self.parent[sel]
            mid, mid_tot = self.class_counts[cls], self.class_tot[cls]
        p1 = (mid + ALPHA_BIN * p0) / (mid_tot + ALPHA_BIN)[:, None]
        cg = self.counts[group][sel]
        return (cg + ALPHA_GROUP * p1) / (self.count_tot[group][sel] + ALPHA_GROUP)[:, None]

    def _plan(self, group: int, c: np.ndarray):
        """A chunk's decode order (positions sorted by bin, stable), its symbols per bin (all
        bins), the bins present (ascending), their counts, probability rows and constriction calls."""
        order = np.argsort(c.astype(self._sort_type), kind="stable")
        per_bin = np.bincount(c, minlength=self.bins)
        present = per_bin.nonzero()[0]
        k = per_bin[present]
        probs = self.probabilities(group, None)[present] if self._dense else self.probabilities(group, present)
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
        self.total += np.bincount(sym, minlength=a)
        self.count_tot[group] += per_bin
        if self._dense:
            hist = np.bincount(c * a + sym, minlength=self.bins * a).reshape(self.bins, a)
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

    def update(self, group: int, ctx: np.ndarray, sym: np.ndarray) -> None:
        """Adds symbols with their context bins (any order)."""
        ctx = ctx.astype(np.int64)
        sym = sym.astype(np.int64)
        order = np.argsort(ctx.astype(self._sort_type), kind="stable")
        per_bin = np.bincount(ctx, minlength=self.bins)
        present = per_bin.nonzero()[0]
        self._add(group, ctx, sym, per_bin, present, per_bin[present], sym[order])

    def chunks(self, group: int, count: int):
        """Yields (start, end) of the chunks of ``count`` symbols; call ``update`` between them."""
        start = 0
        while start < count:
            end = min(count, start + max(MIN_CHUNK, self.seen[group] // CHUNK_SHARE))
            yield start, end
            start = end

    def encode(self, ops, group: int, ctx: np.ndarray, sym: np.ndarray) -> None:
        """Appends the symbols (pass order, with their context bins) to ``ops`` in decode order."""
        ctx = ctx.astype(np.int64)
        sym = sym.astype(np.int64)
        if sym.size and (sym.min() < 0 or sym.max() >= self.alphabet):
            raise ValueError("symbol outside the plane's alphabet")
        for start, end in self.chunks(group, sym.size):
            c, s = ctx[start:end], sym[start:end]
            order, per_bin, present, k, probs, runs = self._plan(group, c)
            ordered = s[order]
            ops.add_rows(ordered, probs, k, runs)
            self._add(group, c, s, per_bin, present, k, ordered)

    def decode(self, dec, group: int, ctx: np.ndarray) -> np.ndarray:
        """Inverse of ``encode``: the symbols of the pixels with context bins ``ctx`` (pass order)."""
        ctx = ctx.astype(np.int64)
        out = np.empty(ctx.size, dtype=np.int64)
        for start, end in self.chunks(group, ctx.size):
            c = ctx[start:end]
            order, per_bin, present, k, probs, runs = self._plan(group, c)
            ordered = dec.rows(probs, k, runs)
            if start:
                order += start
            out[order] = ordered
            self._add(group, c, out[start:end], per_bin, present, k, ordered)
        return out
