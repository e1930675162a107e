"""Adaptive context models decoded in bulk (payload version 3).

Instead of per-image static tables, every coded plane keeps symbol counts per
(context group, context bin).  A pass's symbols are coded in *chunks* (in pass
order); all symbols of a chunk use the probabilities implied by the counts of
everything coded before the chunk, so a chunk is decoded with one constriction
call per context bin present in it, and the counts are updated after the chunk.
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


class AdaptiveModel:
    """Counts of one coded plane: ``groups`` × ``bins`` contexts over ``alphabet`` symbols."""

    def __init__(self, groups: int, bins: int, alphabet: int, parent: np.ndarray | None = None) -> None:
        """``parent`` (raster scan): per bin, the class whose counts (over all bins of the class)
        replace the per-bin middle level of the blend; None: the middle level is the bin itself."""
        self.groups = groups
        self.bins = bins
        self.alphabet = max(2, alphabet)
        self.parent = parent
        self.counts = np.zeros((groups, bins, self.alphabet), dtype=np.int64)
        if parent is None:
            self.bin_counts = np.zeros((bins, self.alphabet), dtype=np.int64)
        else:
            self.class_counts = np.zeros((int(parent.max()) + 1, self.alphabet), dtype=np.int64)
        self.total = np.zeros(self.alphabet, dtype=np.int64)
        self.seen = np.zeros(groups, dtype=np.int64)

    def probabilities(self, group: int, bins: np.ndarray) -> np.ndarray:
        """(len(bins), alphabet) float64 probabilities of those bins for the next chunk of ``group``."""
        a = self.alphabet
        p0 = (self.total * a + GAMMA) / float((int(self.total.sum()) + GAMMA) * a)
        mid = self.bin_counts[bins] if self.parent is None else self.class_counts[self.parent[bins]]
        p1 = (mid + ALPHA_BIN * p0) / (mid.sum(axis=1, keepdims=True) + ALPHA_BIN)
        cg = self.counts[group, bins]
        return (cg + ALPHA_GROUP * p1) / (cg.sum(axis=1, keepdims=True) + ALPHA_GROUP)

    def update(self, group: int, ctx: np.ndarray, sym: np.ndarray) -> None:
        a = self.alphabet
        size = self.bins * a
        if ctx.size * 4 >= size:
            hist = np.bincount(ctx * a + sym, minlength=size)
            self.counts[group].reshape(-1)[:] += hist
            if self.parent is None:
                self.bin_counts.reshape(-1)[:] += hist
            else:
                keys = np.flatnonzero(hist)
                np.add.at(self.class_counts.reshape(-1), self.parent[keys // a] * a + keys % a, hist[keys])
            self.total += hist.reshape(self.bins, a).sum(axis=0)
        else:
            keys, counts = np.unique(ctx * a + sym, return_counts=True)
            self.counts[group].reshape(-1)[keys] += counts
            if self.parent is None:
                self.bin_counts.reshape(-1)[keys] += counts
            else:
                np.add.at(self.class_counts.reshape(-1), self.parent[keys // a] * a + keys % a, counts)
            np.add.at(self.total, keys % a, counts)
        self.seen[group] += ctx.size

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
            c, s = ctx[start:end], sym[start:end]
            order = np.argsort(c, kind="stable")
            counts = np.bincount(c, minlength=self.bins)
            present = np.flatnonzero(counts)
            probs = self.probabilities(group, present)
            ordered = s[order]
            at = 0
            for i, b in enumerate(present.tolist()):
                k = int(counts[b])
                ops.add(ordered[at : at + k], Categorical(probs[i], perfect=False))
                at += k
            self.update(group, c, s)

    def decode(self, dec, group: int, ctx: np.ndarray) -> np.ndarray:
        """Inverse of ``encode``: the symbols of the pixels with context bins ``ctx`` (pass order)."""
        ctx = ctx.astype(np.int64)
        out = np.empty(ctx.size, dtype=np.int64)
        for start, end in self.chunks(group, ctx.size):
            c = ctx[start:end]
            order = np.argsort(c, kind="stable")
            counts = np.bincount(c, minlength=self.bins)
            present = np.flatnonzero(counts)
            probs = self.probabilities(group, present)
            parts = [dec.raw_symbols(Categorical(probs[i], perfect=False), k)
                     for i, k in enumerate(counts[present].tolist())]
            s = np.empty(c.size, dtype=np.int64)
            s[order] = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            out[start:end] = s
            self.update(group, c, s)
        return out
