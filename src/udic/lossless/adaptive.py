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


DENSE_LIMIT = 8192  # models with at most this many (bin, symbol) counts update all bins at once
SOLO = 48  # a bin with at least this many symbols in a chunk is one constriction call of its own


def _runs(k: np.ndarray) -> list[tuple[int, int]]:
    """Calls for a chunk's bins (ascending; ``k`` symbols each): (first, last + 1) bin positions;
    a bin with ≥ SOLO symbols alone (one model), runs of the others together (model family).
    Only the speed depends on this: the stream is the same either way."""
    if k.size == 1:
        return [(0, 1)]
    solo = np.flatnonzero(k >= SOLO).tolist()
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
        self.alphabet = max(2, alphabet)
        self.parent = parent
        if parent is not None and parent.size > 1 and np.any(np.diff(parent) < 0):
            raise ValueError("bin classes must not decrease")
        self.counts = np.zeros((groups, bins, self.alphabet), dtype=np.int64)
        if parent is None:
            self.bin_counts = np.zeros((bins, self.alphabet), dtype=np.int64)
        else:
            self.class_counts = np.zeros((int(parent.max()) + 1, self.alphabet), dtype=np.int64)
        self.total = np.zeros(self.alphabet, dtype=np.int64)
        self.n_total = 0  # = total.sum()
        self.seen = np.zeros(groups, dtype=np.int64)
        self._sort_type = np.uint8 if bins <= 256 else np.uint16 if bins <= 65536 else np.int64
        # Small models update and blend all bins at once (fewer, larger numpy operations).
        self._dense = bins * self.alphabet <= DENSE_LIMIT
        if parent is not None:
            self._class_starts = np.flatnonzero(np.concatenate([[True], parent[1:] != parent[:-1]]))

    def probabilities(self, group: int, bins: np.ndarray) -> np.ndarray:
        """(len(bins), alphabet) float64 probabilities of those bins for the next chunk of ``group``."""
        a = self.alphabet
        p0 = (self.total * a + GAMMA) / float((self.n_total + GAMMA) * a)
        mid = self.bin_counts[bins] if self.parent is None else self.class_counts[self.parent[bins]]
        p1 = (mid + ALPHA_BIN * p0) / (mid.sum(axis=1, keepdims=True) + ALPHA_BIN)
        cg = self.counts[group, bins]
        return (cg + ALPHA_GROUP * p1) / (cg.sum(axis=1, keepdims=True) + ALPHA_GROUP)

    def _all_probabilities(self, group: int) -> np.ndarray:
        """``probabilities`` of every bin (elementwise the same numbers)."""
        a = self.alphabet
        p0 = (self.total * a + GAMMA) / float((self.n_total + GAMMA) * a)
        mid = self.bin_counts if self.parent is None else self.class_counts[self.parent]
        p1 = (mid + ALPHA_BIN * p0) / (mid.sum(axis=1, keepdims=True) + ALPHA_BIN)
        cg = self.counts[group]
        return (cg + ALPHA_GROUP * p1) / (cg.sum(axis=1, keepdims=True) + ALPHA_GROUP)

    def _split(self, group: int, c: np.ndarray):
        """A chunk's decode order (positions sorted by bin, stable), its bins present (ascending),
        their symbol counts and probability rows."""
        order = np.argsort(c.astype(self._sort_type), kind="stable")
        per_bin = np.bincount(c, minlength=self.bins)
        present = np.flatnonzero(per_bin)
        if self._dense:
            return order, present, per_bin[present], self._all_probabilities(group)[present]
        return order, present, per_bin[present], self.probabilities(group, present)

    def _update_dense(self, group: int, c: np.ndarray, sym: np.ndarray) -> None:
        a = self.alphabet
        hist = np.bincount(c * a + sym, minlength=self.bins * a).reshape(self.bins, a)
        self.counts[group] += hist
        self.total += hist.sum(axis=0)
        if self.parent is None:
            self.bin_counts += hist
        else:
            self.class_counts += np.add.reduceat(hist, self._class_starts, axis=0)
        self.n_total += c.size
        self.seen[group] += c.size

    def _update(self, group: int, present: np.ndarray, k: np.ndarray, ordered: np.ndarray) -> None:
        """Adds a chunk's symbols (sorted by bin: ``k[i]`` of bin ``present[i]`` in turn)."""
        a = self.alphabet
        if present.size == 1:
            hist = np.bincount(ordered, minlength=a)[None]
        else:
            rows = np.repeat(np.arange(present.size), k)
            hist = np.bincount(rows * a + ordered, minlength=present.size * a).reshape(present.size, a)
        self.counts[group, present] += hist
        self.total += hist.sum(axis=0)
        if self.parent is None:
            self.bin_counts[present] += hist
        else:
            cls = self.parent[present]
            if cls.size > 1:
                starts = np.flatnonzero(np.concatenate([[True], cls[1:] != cls[:-1]]))
                if starts.size < cls.size:
                    hist = np.add.reduceat(hist, starts, axis=0)
                    cls = cls[starts]
            self.class_counts[cls] += hist
        self.n_total += ordered.size
        self.seen[group] += ordered.size

    def update(self, group: int, ctx: np.ndarray, sym: np.ndarray) -> None:
        """Adds symbols with their context bins (any order)."""
        ctx = ctx.astype(np.int64)
        if self._dense:
            self._update_dense(group, ctx, sym.astype(np.int64))
            return
        order = np.argsort(ctx.astype(self._sort_type), kind="stable")
        per_bin = np.bincount(ctx, minlength=self.bins)
        present = np.flatnonzero(per_bin)
        self._update(group, present, per_bin[present], sym.astype(np.int64)[order])

    def chunks(self, group: int, count: int):
        """Yields (start, end) of the chunks of ``count`` symbols; call ``update`` between them."""
        start = 0
        while start < count:
            end = min(count, start + max(MIN_CHUNK, int(self.seen[group]) // CHUNK_SHARE))
            yield start, end
            start = end

    def encode(self, ops, group: int, ctx: np.ndarray, sym: np.ndarray) -> None:
        """Appends the symbols (pass order, with their context bins) to ``ops`` in decode order."""
        ctx = ctx.astype(np.int64)
        sym = sym.astype(np.int64)
        if sym.size and (sym.min() < 0 or sym.max() >= self.alphabet):
            raise ValueError("symbol outside the plane's alphabet")
        for start, end in self.chunks(group, sym.size):
            c = ctx[start:end]
            order, present, k, probs = self._split(group, c)
            ordered = sym[start:end][order]
            ops.add_rows(ordered, probs, k, _runs(k))
            if self._dense:
                self._update_dense(group, c, sym[start:end])
            else:
                self._update(group, present, k, ordered)

    def decode(self, dec, group: int, ctx: np.ndarray) -> np.ndarray:
        """Inverse of ``encode``: the symbols of the pixels with context bins ``ctx`` (pass order)."""
        ctx = ctx.astype(np.int64)
        out = np.empty(ctx.size, dtype=np.int64)
        for start, end in self.chunks(group, ctx.size):
            c = ctx[start:end]
            order, present, k, probs = self._split(group, c)
            ordered = dec.rows(probs, k, _runs(k))
            out[start + order] = ordered
            if self._dense:
                self._update_dense(group, c, out[start:end])
            else:
                self._update(group, present, k, ordered)
        return out
