"""Tiles with halos: run a convolutional network on a huge image piece by piece.

Each tile (its *core*) is computed from a window that extends it by a halo on every
side (clipped at the image border).  When the halo covers the network's receptive
field, the core of the window's output equals the core of the whole-image output, so
tiles meet without seams while memory stays bounded by the window size.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """A tile's core and its haloed window, as (top, bottom, left, right) half-open ranges."""

    core: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]

    def outer_slices(self, scale: int = 1) -> tuple[slice, slice]:
        t, b, l, r = self.outer
        return slice(t * scale, b * scale), slice(l * scale, r * scale)

    def core_slices(self, scale: int = 1) -> tuple[slice, slice]:
        t, b, l, r = self.core
        return slice(t * scale, b * scale), slice(l * scale, r * scale)

    def core_in_outer(self, scale: int = 1) -> tuple[slice, slice]:
        """Where the core sits inside the window's own (output) array."""
        t, b, l, r = self.core
        ot, _, ol, _ = self.outer
        return slice((t - ot) * scale, (b - ot) * scale), slice((l - ol) * scale, (r - ol) * scale)

    def visible_in_outer(self, scale: int, height: int, width: int) -> tuple[slice, slice]:
        """The core's part inside a ``height × width`` image (in ``scale`` units, e.g. real
        pixels of a padded grid), in the window's own coordinates; may be empty."""
        t, b, l, r = self.core
        ot, _, ol, _ = self.outer
        return (slice((t - ot) * scale, min(b * scale, height) - ot * scale),
                slice((l - ol) * scale, min(r * scale, width) - ol * scale))


def tile_windows(height: int, width: int, tile: int, halo: int) -> list[Window]:
    """Raster-order tiles of side ``tile`` covering ``height × width``, each with its window."""
    if tile <= 0 or halo < 0:
        raise ValueError("tile must be positive and halo non-negative")
    out = []
    for top in range(0, height, tile):
        bottom = min(top + tile, height)
        for left in range(0, width, tile):
            right = min(left + tile, width)
            outer = (max(top - halo, 0), min(bottom + halo, height), max(left - halo, 0), min(right + halo, width))
            out.append(Window(core=(top, bottom, left, right), outer=outer))
    return out
