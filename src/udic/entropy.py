"""Entropy coding with constriction: indexed categorical tables with escapes.

Like CompressAI's entropy models, one coder serves every kind of symbol: a list of
probability tables, each over a contiguous integer range ``[offset, offset + n)``
plus one *escape* symbol.  Each value to code carries the index of its table.
Values outside a table's range are coded as the escape symbol followed by the value
itself (zig-zag, Elias-gamma-like with uniform chunks), so nothing is ever clipped.

Symbols are coded in table order (all symbols of table 0, then of table 1, …), which
is a pure function of the indexes, so the decoder — which knows the indexes before
decoding — reproduces the exact order.  The ANS coder is a stack: the encoder pushes
everything in reverse so that the decoder pops in forward order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import constriction
import numpy as np

from .errors import ContainerError

_CHUNK_BITS = 16


@dataclass(frozen=True)
class Table:
    """One categorical: pmf over ``offset … offset+len(pmf)-2`` and an escape (last entry)."""

    offset: int
    pmf: np.ndarray  # float64, length n+1, last entry is the escape mass

    @property
    def size(self) -> int:
        return len(self.pmf) - 1


class IndexedCoder:
    """Codes integer arrays where each element selects one of ``tables`` by index."""

    def __init__(self, tables: list[Table]) -> None:
        if not tables:
            raise ValueError("need at least one table")
        self.tables = tables
        self._models = [
            constriction.stream.model.Categorical(t.pmf.astype(np.float64), perfect=False)
            for t in tables
        ]

    # -- escapes -----------------------------------------------------------------
    @staticmethod
    def _escape_symbols(value: int) -> list[tuple[int, int]]:
        """(symbol, alphabet size) pairs, in decode order, for one escaped value."""
        u = 2 * value if value >= 0 else -2 * value - 1  # zig-zag
        nbits = u.bit_length()
        if nbits > 63:  # nbits itself is coded under Uniform(64)
            raise ValueError(f"value {value} is too large to entropy-code")
        out = [(nbits, 64)]
        remaining = nbits
        while remaining > 0:
            take = min(_CHUNK_BITS, remaining)
            remaining -= take
            out.append(((u >> remaining) & ((1 << take) - 1), 1 << take))
        return out

    @staticmethod
    def _decode_escape(coder: constriction.stream.stack.AnsCoder) -> int:
        # Uniform(64): nbits ≤ 63, so u < 2^63 and the value always fits an int64.
        nbits = int(coder.decode(constriction.stream.model.Uniform(64)))
        u = 0
        remaining = nbits
        while remaining > 0:
            take = min(_CHUNK_BITS, remaining)
            remaining -= take
            chunk = int(coder.decode(constriction.stream.model.Uniform(1 << take)))
            u = (u << take) | chunk
        return u // 2 if u % 2 == 0 else -(u + 1) // 2

    # -- API -----------------------------------------------------------------------
    def encode(self, values: np.ndarray, indexes: np.ndarray) -> bytes:
        return self.encode_segments([(values, indexes)])

    def encode_segments(self, segments: "list[tuple[np.ndarray, np.ndarray]]") -> bytes:
        """One stream of several (values, indexes) segments, decoded in list order with
        ``decode_segments`` (each segment's tables may depend on the ones before it)."""
        coder = constriction.stream.stack.AnsCoder()
        for values, indexes in reversed(segments):  # push in reverse decode order
            self._push(coder, values, indexes)
        return coder.get_compressed().astype("<u4").tobytes()

    def _push(self, coder: constriction.stream.stack.AnsCoder, values: np.ndarray, indexes: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.int64).ravel()
        indexes = np.asarray(indexes, dtype=np.int64).ravel()
        if values.shape != indexes.shape:
            raise ValueError("values and indexes differ in size")
        order = self._groups(indexes)
        for t_idx, positions in reversed(order):
            table = self.tables[t_idx]
            v = values[positions]
            sym = v - table.offset
            escaped = (sym < 0) | (sym >= table.size)
            sym = np.where(escaped, table.size, sym).astype(np.int32)
            # Escape payloads are decoded right after their group's symbols, in order.
            payload: list[tuple[int, int]] = []
            for value in v[escaped]:
                payload.extend(self._escape_symbols(int(value)))
            for s, size in reversed(payload):
                coder.encode_reverse(np.array([s], dtype=np.int32), constriction.stream.model.Uniform(size))
            coder.encode_reverse(sym, self._models[t_idx])

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        segments = self.decode_segments(data)
        out = segments.next(indexes)
        segments.finish()
        return out

    def decode_segments(self, data: bytes) -> "SegmentDecoder":
        """A reader of the segments of one stream, one ``next(indexes)`` per segment."""
        if len(data) % 4:
            raise ContainerError("corrupt data: entropy-coded section is not a whole number of words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
        except Exception as exc:  # constriction rejects some invalid word streams
            raise ContainerError(f"corrupt data: {exc}") from None
        return SegmentDecoder(self, coder)

    def _pop(self, coder: constriction.stream.stack.AnsCoder, indexes: np.ndarray) -> np.ndarray:
        indexes = np.asarray(indexes, dtype=np.int64).ravel()
        out = np.empty(indexes.shape, dtype=np.int64)
        try:
            for t_idx, positions in self._groups(indexes):
                table = self.tables[t_idx]
                sym = np.asarray(coder.decode(self._models[t_idx], len(positions)), dtype=np.int64)
                values = sym + table.offset
                for k in np.nonzero(sym == table.size)[0]:
                    values[k] = self._decode_escape(coder)
                out[positions] = values
        except ContainerError:
            raise
        except Exception as exc:
            raise ContainerError(f"corrupt data: {exc}") from None
        return out

    def _groups(self, indexes: np.ndarray) -> list[tuple[int, np.ndarray]]:
        if indexes.size and (indexes.min() < 0 or indexes.max() >= len(self.tables)):
            raise ValueError("table index out of range")
        order = np.argsort(indexes, kind="stable")
        sorted_idx = indexes[order]
        bounds = np.flatnonzero(np.diff(sorted_idx)) + 1
        groups = []
        for chunk in np.split(order, bounds):
            if chunk.size:
                groups.append((int(indexes[chunk[0]]), chunk))
        return groups

    def symbol_bits(self, values: np.ndarray, indexes: np.ndarray) -> np.ndarray:
        """Ideal code length of every element (same shape), escapes included."""
        shape = np.shape(values)
        values = np.asarray(values, dtype=np.int64).ravel()
        indexes = np.asarray(indexes, dtype=np.int64).ravel()
        out = np.empty(values.shape, dtype=np.float64)
        for t_idx, positions in self._groups(indexes):
            table = self.tables[t_idx]
            cost = -np.log2(np.maximum(table.pmf / table.pmf.sum(), 1e-30))
            v = values[positions]
            sym = v - table.offset
            esc = (sym < 0) | (sym >= table.size)
            u = np.where(v >= 0, 2 * v, -2 * v - 1)
            # An escape costs the escape symbol, its length (Uniform(64)) and the value's bits.
            escape_bits = cost[table.size] + 6.0 + np.floor(np.log2(np.maximum(u, 1))) + 1
            out[positions] = np.where(esc, escape_bits, cost[np.clip(sym, 0, table.size - 1)])
        return out.reshape(shape)

    def bits(self, values: np.ndarray, indexes: np.ndarray) -> float:
        """Ideal code length in bits (for rate estimates without coding)."""
        values = np.asarray(values, dtype=np.int64).ravel()
        indexes = np.asarray(indexes, dtype=np.int64).ravel()
        total = 0.0
        for t_idx, positions in self._groups(indexes):
            table = self.tables[t_idx]
            p = table.pmf / table.pmf.sum()
            sym = values[positions] - table.offset
            esc = (sym < 0) | (sym >= table.size)
            sym = np.where(esc, table.size, sym)
            total += float(-np.log2(np.maximum(p[sym], 1e-30)).sum())
            # An escape costs its value's length (Uniform(64)) plus the value's bits.
            for value in values[positions][esc]:
                u = 2 * int(value) if value >= 0 else -2 * int(value) - 1
                total += 6.0 + u.bit_length()
        return total


class SegmentDecoder:
    """Decodes the segments of one ``IndexedCoder.encode_segments`` stream in order."""

    def __init__(self, coder_owner: IndexedCoder, coder: constriction.stream.stack.AnsCoder) -> None:
        self._owner = coder_owner
        self._coder = coder

    def next(self, indexes: np.ndarray) -> np.ndarray:
        return self._owner._pop(self._coder, indexes)

    def finish(self) -> None:
        """An encoder's stream ends exactly where its symbols do."""
        if not self._coder.is_empty():
            raise ContainerError("corrupt data: entropy-coded words left over after the last symbol")


# ---- the fixed tables ------------------------------------------------------------------

GAUSSIAN_TAIL_SIGMAS = 8.0
ESCAPE_MASS = 1e-6


@lru_cache(maxsize=4)
def gaussian_tables(sigmas: tuple[float, ...]) -> list[Table]:
    """Zero-mean discretised Gaussians, one per σ of the scale table."""
    tables = []
    for sigma in sigmas:
        k_max = max(1, int(math.ceil(sigma * GAUSSIAN_TAIL_SIGMAS)))
        k = np.arange(-k_max, k_max + 1, dtype=np.float64)
        inv = 1.0 / (sigma * math.sqrt(2.0))
        erfc = np.vectorize(math.erfc)
        upper = 0.5 * erfc((np.abs(k) - 0.5) * inv)
        lower = 0.5 * erfc((np.abs(k) + 0.5) * inv)
        pmf = np.append(np.maximum(upper - lower, 0.0), ESCAPE_MASS)
        tables.append(Table(offset=-k_max, pmf=pmf))
    return tables


def logistic_table(scale: float, step: float, tail_mass: float = 1e-9) -> Table:
    """Quantised logistic prior for adapter weights: symbol k ↔ weight k·step.

    Encoder and decoder must build identical tables, so every value comes from the same
    scalar ``math.exp`` as always; the speed comes from evaluating the CDF once per
    half-integer (not twice per symbol) and finding the tail from a closed-form guess."""
    def cdf(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x / scale))

    def in_tail(k: int) -> bool:  # is the mass beyond ±(k + ½)·step still above tail_mass?
        return 2 * (1.0 - cdf((k + 0.5) * step)) > tail_mass

    # The smallest k ≥ 0 that is not in_tail (in_tail only turns false once, as k grows):
    # start near 2·(1 − cdf(x)) ≈ 2·exp(−x/scale) = tail_mass and walk to the boundary.
    k_max = max(0, int(scale * math.log(2.0 / tail_mass) / step))
    while k_max > 0 and not in_tail(k_max - 1):
        k_max -= 1
    while in_tail(k_max):
        k_max += 1
    edges = np.array([cdf((i + 0.5) * step) for i in range(-k_max - 1, k_max + 1)], dtype=np.float64)
    pmf = np.append(edges[1:] - edges[:-1], max(tail_mass, 1e-9))
    return Table(offset=-k_max, pmf=pmf)


def tables_from_matrix(pmf: np.ndarray, offsets: np.ndarray) -> list[Table]:
    """Factorized-prior tables stored in a weights file: pmf (C, L+1), offsets (C, 2)=(lo, n)."""
    tables = []
    for c in range(pmf.shape[0]):
        lo, n = int(offsets[c, 0]), int(offsets[c, 1])
        row = np.append(pmf[c, :n], pmf[c, -1])
        tables.append(Table(offset=lo, pmf=row.astype(np.float64)))
    return tables
