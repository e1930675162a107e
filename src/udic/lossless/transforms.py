"""Reversible colour transforms and the palette.

A colour transform turns the 3 colour channels into 3 *planes* in coding order;
later planes are predicted partly from earlier ones, so the order matters.  All
transforms are integer-exact and invertible; each plane carries its value range
so that predictions can be clamped to it.
"""

from __future__ import annotations

import math

import numpy as np

IDENTITY = 0  # planes R, G, B
YCOCG_R = 1  # planes Y, Co, Cg (lossless YCoCg-R lifting)
SUBTRACT_GREEN = 2  # planes G, R-G, B-G
GREEN_FIRST = 3  # planes G, R, B (inter-plane prediction does the decorrelation)
GRAY = 4  # plane G alone, R = B = G (payload version ≥ 12): a black-and-white image saved as RGB
TRANSFORM_NAMES = {IDENTITY: "none", YCOCG_R: "YCoCg-R", SUBTRACT_GREEN: "subtract-green", GREEN_FIRST: "GRB",
                   GRAY: "gray (R = G = B)"}
GRAY_VERSION = 12  # the first payload version with GRAY
#: Transforms that keep every plane a plain colour channel: the only ones near-lossless may
#: use, because a ±N error on a plane must stay ±N on the channel.
CHANNEL_PRESERVING = (IDENTITY, GREEN_FIRST, GRAY)


def forward(rgb: list[np.ndarray], transform: int, maxval: int) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """3 int32 channel arrays → (planes in coding order, inclusive (lo, hi) range of each).
    GRAY gives one plane and needs R = G = B (the caller checks: R and B are not coded)."""
    r, g, b = rgb
    full = (0, maxval)
    signed = (-maxval, maxval)
    if transform == GRAY:
        return [g], [full]
    if transform == IDENTITY:
        return [r, g, b], [full, full, full]
    if transform == GREEN_FIRST:
        return [g, r, b], [full, full, full]
    if transform == SUBTRACT_GREEN:
        return [g, r - g, b - g], [full, signed, signed]
    if transform == YCOCG_R:
        co = r - b
        t = b + (co >> 1)
        cg = g - t
        y = t + (cg >> 1)
        return [y, co, cg], [full, signed, signed]
    raise ValueError(f"unknown colour transform {transform}")


def inverse(planes: list[np.ndarray], transform: int) -> list[np.ndarray]:
    """Planes in coding order → R, G, B."""
    if transform == GRAY:
        (g,) = planes
        return [g, g, g]
    if transform == IDENTITY:
        return list(planes)
    if transform == GREEN_FIRST:
        g, r, b = planes
        return [r, g, b]
    if transform == SUBTRACT_GREEN:
        g, rg, bg = planes
        return [rg + g, g, bg + g]
    if transform == YCOCG_R:
        y, co, cg = planes
        t = y - (cg >> 1)
        g = cg + t
        b = t - (co >> 1)
        r = b + co
        return [r, g, b]
    raise ValueError(f"unknown colour transform {transform}")


# 8-bit images count their colours in a table (linear time) instead of sorting: a 3.7 MP
# screenshot took 2 s per palette search.  Gray (+ alpha) always (a table of at most 2^16);
# RGB from this many pixels, where the 2^24-entry table (~200 MB while it lives) costs less
# than the sort.
TABLE_MIN_PIXELS = 1 << 20


def _distinct_by_table(flat: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(key, return_inverse=True, return_counts=True)`` of ``_distinct``'s 16-bit-per-
    channel keys, for 8-bit samples: the same colours in the same (ascending) order, by counting."""
    compact = np.zeros(flat.shape[0], dtype=np.int64)
    for ch in range(channels):
        compact = (compact << 8) | flat[:, ch]
    table = np.bincount(compact, minlength=1 << (8 * channels))
    present = np.flatnonzero(table)
    counts = table[present]
    del table
    number = np.zeros(1 << (8 * channels), dtype=np.int32)
    number[present] = np.arange(present.size, dtype=np.int32)
    inverse_index = number[compact].astype(np.intp)
    colours = np.zeros(present.size, dtype=np.int64)
    for ch in range(channels):
        colours = (colours << 16) | ((present >> (8 * (channels - 1 - ch))) & 0xFF)
    return colours, inverse_index, counts


def _distinct(pixels: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The image's distinct pixels when there are at most ``limit``: (their values (U, C) int32,
    each pixel's number among them (flat), their order by decreasing frequency, ties by colour);
    None over the limit."""
    h, w, c = pixels.shape
    flat = pixels.reshape(-1, c).astype(np.int64)
    # One int64 key per pixel (≤ 4 channels × 16 bits); a quick reject before np.unique.
    key = np.zeros(flat.shape[0], dtype=np.int64)
    for ch in range(c):
        key = (key << 16) | flat[:, ch]
    sample = key[:: max(1, key.size // (4 * limit))]  # (more pixels than the limit, or it never rejects)
    if np.unique(sample).size > limit:
        return None
    if pixels.dtype == np.uint8 and (c <= 2 or (c == 3 and key.size >= TABLE_MIN_PIXELS)):
        colours, inverse_index, counts = _distinct_by_table(flat, c)
    else:
        colours, inverse_index, counts = np.unique(key, return_inverse=True, return_counts=True)
    if colours.size > limit:
        return None
    values = np.stack([(colours >> (16 * (c - 1 - ch))) & 0xFFFF for ch in range(c)], axis=1).astype(np.int32)
    return values, inverse_index.reshape(-1), np.lexsort((colours, -counts))


def find_palette(pixels: np.ndarray, limit: int = 256) -> tuple[np.ndarray, np.ndarray] | None:
    """(palette (P, C), index plane (H, W)) when the image has at most ``limit`` distinct pixels.

    The palette is sorted by decreasing frequency (ties by colour) so that the literal
    indices coded for pixels matching no neighbour are small for common colours.
    """
    found = _distinct(pixels, limit)
    if found is None:
        return None
    palette, inverse_index, order = found
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    index = rank[inverse_index].reshape(pixels.shape[:2]).astype(np.int32)
    return palette[order], index


POPULAR_SHARE = 0.001  # ``popular_count``: a colour of at least this share of the pixels
POPULAR_MIN = 16  # … and at least this many


def popular_count(pixels: int) -> int:
    """How many pixels make a colour *popular*: a flat region's colour, as opposed to the
    anti-aliasing shades along its edges.  Why: merging within ±N by frequency alone also merges
    nearby flat colours (the dark bands of gnome_blobs at ±16: 36 dB where ±8 kept 58.6 dB);
    merging only the rare shades into the flat colours moves edge pixels only (±32: 53 dB in
    0.43x the ±8 file)."""
    return max(POPULAR_MIN, math.ceil(POPULAR_SHARE * pixels))


def reduce_colours(pixels: np.ndarray, max_error: int, limit: int = 32768, popular: int = 0) -> np.ndarray | None:
    """The image with each distinct colour moved by at most ±max_error per colour sample onto a
    smaller set of colours (alpha unchanged); None when it has more than ``limit`` colours.
    ``popular`` > 0: a colour of at least that many pixels is never moved (see ``popular_count``).

    Why: near-lossless prediction quantises residuals, which breaks the flat regions and exact
    repeats that palettes and copies live on; on flat art the ±N is better spent merging the
    anti-aliasing shades into fewer colours and then coding those exactly.  The map is a function
    of the colour alone, so repeated tiles and glyphs stay identical.  Colours are taken in
    decreasing frequency; each joins the nearest (Chebyshev distance, then frequency) colour kept
    so far within ±max_error, or is kept.  Encoder-side only: the decoder sees a palette image.
    """
    h, w, c = pixels.shape
    colour_ch = 1 if c <= 2 else 3
    found = _distinct(pixels, limit)
    if found is None:
        return None
    values, inverse_index, order = found
    movable = np.ones(len(values), dtype=bool)
    if popular > 0:
        movable = np.bincount(inverse_index, minlength=len(values)) < popular
    kept = np.empty(values.shape, dtype=np.int32)
    kept_count = 0
    target = np.empty(len(values), dtype=np.int64)  # colour i → row of ``kept``
    for i in order.tolist():
        v = values[i]
        j = -1
        if kept_count and movable[i]:
            near = np.abs(kept[:kept_count, :colour_ch] - v[:colour_ch]).max(axis=1)
            if colour_ch < c:  # alpha must match exactly
                near = np.where((kept[:kept_count, colour_ch:] == v[colour_ch:]).all(axis=1), near, max_error + 1)
            best = int(near.argmin())  # nearest; among equals the earlier (more frequent) one
            if int(near[best]) <= max_error:
                j = best
        if j < 0:
            kept[kept_count] = v
            j = kept_count
            kept_count += 1
        target[i] = j
    return kept[target[inverse_index]].reshape(h, w, c).astype(pixels.dtype)
