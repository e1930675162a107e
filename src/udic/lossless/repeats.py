"""Encoder-side search for the copy offsets of repeated content (tile sheets, glyphs).

Every run of four pixels (a row-wise window) is hashed; the nearest earlier window
with the same hash gives a candidate offset (dy, dx).  Flat windows are skipped
(neighbour matching already covers them).  The offsets seen most often are the
image's copy offsets; the decoder never needs this module.
"""

from __future__ import annotations

import numpy as np

WINDOW = 4
DOUBLED = 8  # the most frequent offsets also offered at twice their length


def pixel_keys(pixels: np.ndarray) -> np.ndarray:
    """One int64 per pixel that is equal exactly when the pixels are equal."""
    flat = pixels.astype(np.int64)
    key = np.zeros(pixels.shape[:2], dtype=np.int64)
    for ch in range(pixels.shape[2]):
        key = (key << 16) | flat[:, :, ch]
    return key


def find_offsets(key: np.ndarray, limit: int, min_share: float = 0.002) -> list[tuple[int, int]]:
    """Up to ``limit`` offsets (dy, dx), raster-earlier (dy > 0, or dy = 0 and dx > 0), most used first."""
    height, width = key.shape
    if width < WINDOW or height * width < 64:
        return []
    mult = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5],
                    dtype=np.uint64)
    k = key.astype(np.uint64)
    win = np.zeros((height, width - WINDOW + 1), dtype=np.uint64)
    for i in range(WINDOW):
        win = (win ^ (k[:, i : i + win.shape[1]] * mult[i])) * np.uint64(0xFF51AFD7ED558CCD)
    same = np.ones(win.shape, dtype=bool)
    for i in range(1, WINDOW):
        same &= key[:, i : i + win.shape[1]] == key[:, : win.shape[1]]
    pos = np.flatnonzero(~same.ravel())
    if pos.size < 2:
        return []
    hashes = win.ravel()[pos]
    order = np.argsort(hashes, kind="stable")
    sorted_h = hashes[order]
    repeat = np.flatnonzero(sorted_h[1:] == sorted_h[:-1]) + 1
    cur, prev = pos[order[repeat]], pos[order[repeat - 1]]
    ww = win.shape[1]
    dy = cur // ww - prev // ww
    dx = cur % ww - prev % ww
    valid = (dy > 0) | ((dy == 0) & (dx > 0))
    code = dy[valid] * (2 * width) + (dx[valid] + width)
    if code.size == 0:
        return []
    values, counts = np.unique(code, return_counts=True)
    best = np.argsort(-counts, kind="stable")[:limit]
    floor = max(8, int(min_share * height * width))
    found = [(int(values[i] // (2 * width)), int(values[i] % (2 * width) - width)) for i in best if counts[i] >= floor]
    # Twice a frequent offset: interlaced passes can use (2dy, 2dx) where (dy, dx) points at a
    # pixel of a later pass (a diagonal gradient is its own copy at (1, -1) and at (2, -2)).
    doubled = [(2 * dy, 2 * dx) for dy, dx in found[:DOUBLED] if 2 * dy < height and abs(2 * dx) < width]
    out: list[tuple[int, int]] = []
    for off in [o for pair in zip(found, doubled) for o in pair] + found[len(doubled):]:
        if off not in out:
            out.append(off)
    return out[:limit]
