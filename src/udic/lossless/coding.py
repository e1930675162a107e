"""Token coding: hybrid-uint tokens, quantised static tables, and the ANS op list.

A residual ``r`` becomes ``u = zigzag(r)``; ``u < 16`` is its own token, larger
values become a token naming the exponent and the next bit below the leading one,
plus ``n - 1`` raw low bits coded uniformly (JPEG XL's hybrid uint with
split_exponent 4, msb_in_token 1).  So 16-bit images need at most ~44 tokens.

Tables are per-image static histograms, quantised to one byte per token
(3-bit mantissa, 5-bit exponent) so that encoder and decoder rebuild the same
float64 probabilities from integers.
"""

from __future__ import annotations

import constriction
import numpy as np

from ..errors import ContainerError
from .payload import Reader, Writer

SPLIT = 16  # tokens below this are the value itself
MAX_TOKENS = 72  # enough for u < 2^32
RAW_CHUNK = 16  # raw bits per uniform symbol at most

Categorical = constriction.stream.model.Categorical
Uniform = constriction.stream.model.Uniform
FAMILY = Categorical(perfect=False)  # per-symbol probability rows; same quantisation as Categorical(row)


def zigzag(r: np.ndarray) -> np.ndarray:
    r = r.astype(np.int64)
    return (r << 1) ^ (r >> 63)  # 2r for r ≥ 0, −2r − 1 below


def unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.int64)
    return (u >> 1) ^ -(u & 1)


def tokenize(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u ≥ 0 → (token, number of raw bits, raw bits)."""
    u = u.astype(np.int64)
    top = int(u.max(initial=0))
    if top < SPLIT:
        zero = np.zeros(u.shape, dtype=np.int64)
        return u.astype(np.int32), zero, zero
    if top < _LUT_SIZE and (_LUT or u.size >= _LUT_USE):
        token = token_lut()[u]
        return token.astype(np.int32), _RAW_BITS[token], u - _BASE[token]
    return _tokenize_arith(u)


def _tokenize_arith(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    big = u >= SPLIT
    n = np.frexp(np.maximum(u, 1).astype(np.float64))[1].astype(np.int64) - 1  # floor(log2 u), exact
    nraw = np.where(big, n - 1, 0)
    msb = (u >> np.maximum(n - 1, 0)) & 1
    token = np.where(big, SPLIT + 2 * (n - 4) + msb, u)
    raw = u & ((np.int64(1) << nraw) - 1)
    return token.astype(np.int32), nraw, raw


_LUT_SIZE = 1 << 18  # every zigzag residual of 16-bit planes
_LUT_USE = 4096  # the table is built (once, ~20 ms) for the first array at least this large
_LUT: list[np.ndarray] = []


def token_lut() -> np.ndarray:
    """The token of every u < 2^18 (built on first use; encoders of large images call it early)."""
    if not _LUT:
        _LUT.append(_tokenize_arith(np.arange(_LUT_SIZE, dtype=np.int64))[0].astype(np.uint8))
    return _LUT[0]


_T = np.arange(MAX_TOKENS, dtype=np.int64)
_RAW_BITS = np.where(_T >= SPLIT, (_T - SPLIT) // 2 + 3, 0)
_BASE = np.where(_T >= SPLIT, (1 << ((_T - SPLIT) // 2 + 4)) | (((_T - SPLIT) % 2) << ((_T - SPLIT) // 2 + 3)), _T)


def token_raw_bits(token: np.ndarray) -> np.ndarray:
    return _RAW_BITS[token]


def detokenize(token: np.ndarray, raw: np.ndarray | None) -> np.ndarray:
    """token (+ raw low bits) → u; ``raw`` None means no token carried raw bits."""
    base = _BASE[token]
    return base if raw is None else base | raw


# --- quantised table counts ----------------------------------------------------
# q = 0: token absent; q ≥ 1: weight (8 + m) << e with q = 1 + 8e + m.
_Q = np.arange(256, dtype=np.int64)
_QVALUE = np.where(_Q == 0, 0, (8 + (_Q - 1) % 8) << np.minimum((_Q - 1) // 8, 40))
_QMAX = 1 + 8 * 30 + 7


def quantize_counts(counts: np.ndarray) -> np.ndarray:
    """Counts → bytes q; every present token keeps a non-zero weight."""
    counts = counts.astype(np.int64)
    scaled = counts * 8
    q = np.searchsorted(_QVALUE[1 : _QMAX + 1], scaled, side="left") + 1
    q = np.minimum(q, _QMAX)
    # choose the nearer of q-1 and q in log terms
    lower = np.maximum(q - 1, 1)
    lo_v = _QVALUE[lower].astype(np.float64)
    hi_v = _QVALUE[q].astype(np.float64)
    s = np.maximum(scaled, 1).astype(np.float64)
    q = np.where(s * s < lo_v * hi_v, lower, q)
    return np.where(counts > 0, q, 0).astype(np.uint8)


def table_weights(q: np.ndarray) -> np.ndarray:
    return _QVALUE[q.astype(np.int64)].astype(np.float64)


def model(q: np.ndarray) -> object:
    """Categorical over the table's tokens; padded to two entries (constriction needs ≥ 2)."""
    weights = table_weights(q)
    if weights.size < 2:
        weights = np.concatenate([weights, np.zeros(2 - weights.size)])
    return Categorical(weights, perfect=False)


def write_table(w: Writer, q: np.ndarray) -> None:
    w.u8(len(q))
    w.raw(q.astype(np.uint8).tobytes())


def read_table(r: Reader) -> np.ndarray:
    length = r.u8("table length")
    if not 1 <= length <= MAX_TOKENS:
        raise ContainerError(f"lossless payload: table length {length} is out of range")
    q = r.u8_array(length, "table")
    if q[-1] == 0 or np.any(q > _QMAX):
        raise ContainerError("lossless payload: malformed probability table")
    return q.copy()


def table_bytes(counts: np.ndarray) -> int:
    nz = np.flatnonzero(counts)
    return 1 + (int(nz[-1]) + 1 if nz.size else 1)


def trimmed(q: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(q)
    return q[: int(nz[-1]) + 1] if nz.size else np.ones(1, dtype=np.uint8)


def entropy_bits(counts: np.ndarray) -> float:
    """Ideal code length of a histogram under its own distribution (bits)."""
    counts = counts[counts > 0].astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    return float(-(counts * np.log2(counts / total)).sum())


def entropy_bits_rows(counts: np.ndarray) -> np.ndarray:
    """``entropy_bits`` of every row of a 2-D histogram at once."""
    counts = counts.astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    safe = np.where(counts > 0, counts, 1.0)
    return -(counts * np.log2(safe / np.maximum(totals, 1.0))).sum(axis=1)


def table_bytes_rows(counts: np.ndarray) -> np.ndarray:
    """``table_bytes`` of every row of a 2-D histogram at once."""
    present = counts > 0
    last = counts.shape[1] - np.argmax(present[:, ::-1], axis=1)
    return 1 + np.where(present.any(axis=1), last, 1)


def code_values(model, values: np.ndarray, ops: "OpList", bins: np.ndarray | None = None) -> None:
    """Non-negative values as hybrid-uint tokens (one call of the adaptive ``model``, by ``bins``
    or bin 0), then their raw bits: copy offsets, long matches, palette residuals."""
    tok, nraw, raw = tokenize(values)
    model.encode(ops, 0, np.zeros(tok.size, np.int64) if bins is None else bins, tok)
    ops.add_raw(raw, nraw)


def decode_values(model, dec: "Decoder", bins: np.ndarray) -> np.ndarray:
    """Inverse of ``code_values``."""
    tok = model.decode(dec, 0, bins)
    return detokenize(tok, dec.raw(token_raw_bits(tok)))


class OpList:
    """Symbols in *decode* order; ``finish`` pushes them in reverse into one ANS stack."""

    def __init__(self) -> None:
        self.ops: list[tuple[np.ndarray, object]] = []

    def add(self, symbols: np.ndarray, model: object) -> None:
        if symbols.size:
            self.ops.append((symbols.astype(np.int32), model, None))

    def add_rows(self, symbols: np.ndarray, probs: np.ndarray, counts: np.ndarray,
                 runs: list[tuple[int, int]]) -> None:
        """``counts[i]`` symbols in turn coded with ``Categorical(probs[i], perfect=False)`` each;
        ``runs`` (consecutive row ranges covering all rows) says how the rows are grouped into
        constriction calls (a single row: one fixed model; several: the model family)."""
        _row_ops(self.ops, symbols, probs, counts, runs)

    def defer(self, model: object, call: int) -> None:
        """A placeholder for the ``call``-th recorded call of ``model`` (an adaptive model that
        works out its chunks in bulk when the stream is written: ``model.flush()``)."""
        self.ops.append((None, model, call))

    def add_raw(self, raw: np.ndarray, nraw: np.ndarray) -> None:
        """Raw low bits, grouped by bit count (ascending), each group in pixel order."""
        counts = np.bincount(nraw) if nraw.size else np.zeros(1, dtype=np.int64)
        for bits in (np.flatnonzero(counts[1:]) + 1).tolist():
            vals = raw[nraw == bits]
            for sym, size in _raw_chunks(vals, bits):
                self.add(sym, Uniform(size))

    def finish(self) -> bytes:
        flushed = {}
        for symbols, model, call in self.ops:
            if symbols is None and id(model) not in flushed:
                flushed[id(model)] = model.flush()
        ops: list[tuple] = []
        for op in self.ops:
            if op[0] is None:
                for entry in flushed[id(op[1])][op[2]]:
                    _row_ops(ops, *entry)
            else:
                ops.append(op)
        self.ops = ops
        coder = constriction.stream.stack.AnsCoder()
        for symbols, model, counts in reversed(self.ops):
            if counts is None:
                coder.encode_reverse(symbols, model)
            else:
                coder.encode_reverse(symbols, FAMILY, np.repeat(model, counts, axis=0))
        return coder.get_compressed().astype("<u4").tobytes()


def _row_ops(ops: list, symbols: np.ndarray, probs: np.ndarray, counts: np.ndarray,
             runs: list[tuple[int, int]]) -> None:
    symbols = symbols.astype(np.int32)
    if len(runs) == 1:
        if runs[0][1] == 1:
            ops.append((symbols, Categorical(probs[0], perfect=False), None))
        else:
            ops.append((symbols, probs, counts))
        return
    ends = np.cumsum(counts).tolist()
    for first, last in runs:
        start = ends[first - 1] if first else 0
        if last - first == 1:
            ops.append((symbols[start : ends[first]], Categorical(probs[first], perfect=False), None))
        else:
            ops.append((symbols[start : ends[last - 1]], probs[first:last], counts[first:last]))


def _raw_chunks(vals: np.ndarray, bits: int) -> list[tuple[np.ndarray, int]]:
    """High chunk first, each at most RAW_CHUNK bits."""
    out = []
    remaining = bits
    while remaining > 0:
        take = min(RAW_CHUNK, remaining)
        remaining -= take
        out.append(((vals >> remaining) & ((1 << take) - 1), 1 << take))
    return out


class Decoder:
    """Wraps the ANS stack; any failure inside constriction is a damaged payload."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise ContainerError("lossless payload: entropy-coded data is not a whole number of words")
        try:
            self.coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        except Exception as exc:  # constriction rejects some invalid word streams
            raise ContainerError(f"lossless payload: invalid entropy-coded data ({exc})") from None

    def symbols(self, model: object, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        try:
            return np.asarray(self.coder.decode(model, count), dtype=np.int64)
        except Exception as exc:
            raise ContainerError(f"lossless payload: entropy decoding failed ({exc})") from None

    def single(self, probs: np.ndarray, count: int) -> np.ndarray:
        """``count`` symbols with ``Categorical(probs, perfect=False)``."""
        try:
            return self.coder.decode(Categorical(probs, perfect=False), count)
        except Exception as exc:
            raise ContainerError(f"lossless payload: entropy decoding failed ({exc})") from None

    def per_symbol(self, rows: np.ndarray) -> np.ndarray:
        """One symbol per probability row (``Categorical(row, perfect=False)`` each), in order."""
        try:
            return self.coder.decode(FAMILY, rows)
        except Exception as exc:
            raise ContainerError(f"lossless payload: entropy decoding failed ({exc})") from None

    def rows(self, probs: np.ndarray, counts: np.ndarray, runs: list[tuple[int, int]]) -> np.ndarray:
        """Inverse of ``OpList.add_rows``: ``counts[i]`` symbols with row ``probs[i]`` in turn (int32)."""
        parts = []
        try:
            for first, last in runs:
                if last - first == 1:
                    parts.append(self.coder.decode(Categorical(probs[first], perfect=False), int(counts[first])))
                else:
                    parts.append(self.coder.decode(FAMILY, np.repeat(probs[first:last], counts[first:last], axis=0)))
        except Exception as exc:
            raise ContainerError(f"lossless payload: entropy decoding failed ({exc})") from None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def raw(self, nraw: np.ndarray) -> np.ndarray | None:
        """Raw low bits for every position (None when no position has any)."""
        counts = np.bincount(nraw, minlength=1)
        if counts.size == 1:
            return None
        order = np.argsort(nraw.astype(np.uint8), kind="stable")
        parts = [np.zeros(int(counts[0]), dtype=np.int64)]
        for bits in range(1, counts.size):
            count = int(counts[bits])
            vals = np.zeros(count, dtype=np.int64)
            if count:
                remaining = bits
                while remaining > 0:
                    take = min(RAW_CHUNK, remaining)
                    remaining -= take
                    vals = (vals << take) | self.symbols(Uniform(1 << take), count)
            parts.append(vals)
        raw = np.empty(nraw.shape, dtype=np.int64)
        raw[order] = np.concatenate(parts)
        return raw

    def check_finished(self) -> None:
        if not self.coder.is_empty():
            raise ContainerError("lossless payload: entropy-coded data has words left over")
