"""Lossless alpha planes: left-neighbour residuals under a per-image categorical.

Alpha masks are mostly flat with sharp or antialiased edges, so the residual of the
left neighbour is almost always 0; a static per-image histogram codes that in a
small fraction of a bit per pixel, with constriction like everything else.
"""

from __future__ import annotations

import constriction
import numpy as np

from .wire import Reader, write_varint
from .errors import ContainerError


def _residuals(alpha: np.ndarray) -> np.ndarray:
    flat = alpha.astype(np.int64).ravel()
    pred = np.empty_like(flat)
    pred[0] = 0
    pred[1:] = flat[:-1]  # the left neighbour
    h, w = alpha.shape
    # Row starts predict from the pixel above (a[i-1, 0]) per the spec.
    if h > 1:
        pred[w::w] = alpha[:-1, 0].astype(np.int64)
    return (flat - pred) % 256


def encode_alpha(alpha: np.ndarray) -> bytes:
    if alpha.dtype != np.uint8 or alpha.ndim != 2:
        raise ValueError("alpha must be a 2-D uint8 array")
    res = _residuals(alpha)
    counts = np.bincount(res, minlength=256)
    used = np.flatnonzero(counts)
    out = bytearray(write_varint(len(used)))
    for s in used:
        out.append(int(s))
        out += write_varint(int(counts[s]))
    if len(used) == 1:
        return bytes(out)  # a single symbol needs no coded data
    model = constriction.stream.model.Categorical(counts.astype(np.float64), perfect=False)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(res.astype(np.int32), model)
    return bytes(out) + coder.get_compressed().astype("<u4").tobytes()


def decode_alpha(payload: bytes, height: int, width: int) -> np.ndarray:
    reader = Reader(payload, len(payload))
    n_used = reader.varint("alpha table")
    if not 1 <= n_used <= 256:
        raise ContainerError("corrupt alpha section")
    counts = np.zeros(256, dtype=np.float64)
    previous = -1
    for _ in range(n_used):
        s = reader.take(1, "alpha table")[0]
        count = reader.varint("alpha table")
        if s <= previous or count < 1:  # spec §7: distinct, increasing symbols, each used
            raise ContainerError("corrupt alpha section (symbol table out of order)")
        counts[s], previous = count, s
    if counts.sum() != height * width:
        raise ContainerError("corrupt alpha section (pixel count mismatch)")
    rest = payload[reader.pos :]
    if n_used == 1:
        if rest:
            raise ContainerError("corrupt alpha section")
        res = np.full(height * width, int(np.flatnonzero(counts)[0]), dtype=np.int64)
    else:
        if len(rest) % 4 or not rest:
            raise ContainerError("corrupt alpha section")
        try:
            coder = constriction.stream.stack.AnsCoder(np.frombuffer(rest, dtype="<u4").astype(np.uint32))
            model = constriction.stream.model.Categorical(counts, perfect=False)
            res = np.asarray(coder.decode(model, height * width), dtype=np.int64)
            used_up = coder.is_empty()
        except Exception as exc:
            raise ContainerError(f"corrupt alpha section ({exc})") from None
        if not used_up:  # spec §9: every coded group fully consumed
            raise ContainerError("corrupt alpha section (words left over)")
        # The table holds the exact residual counts: damaged words almost never reproduce them.
        if not np.array_equal(np.bincount(res, minlength=256), counts):
            raise ContainerError("corrupt alpha section (decoded data disagree with the table)")
    # Undo the prediction: cumulative sums mod 256 along rows, row starts from above.
    res = res.reshape(height, width)
    out = np.empty((height, width), dtype=np.int64)
    start = 0
    for i in range(height):
        start = (start + res[i, 0]) % 256 if i else res[0, 0] % 256
        row = (start + np.cumsum(res[i, 1:])) % 256
        out[i, 0] = start
        out[i, 1:] = row
    return out.astype(np.uint8)
