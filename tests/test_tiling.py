"""Tile windows: the cores partition the image, the windows add a clipped halo."""

from __future__ import annotations

import numpy as np
import pytest

from udic.tiling import tile_windows


@pytest.mark.parametrize("height, width, tile, halo", [(10, 7, 3, 1), (64, 64, 64, 4), (5, 130, 32, 0), (1, 1, 4, 2)])
def test_cores_partition_and_windows_contain_them(height: int, width: int, tile: int, halo: int) -> None:
    cover = np.zeros((height, width), dtype=int)
    windows = tile_windows(height, width, tile, halo)
    for w in windows:
        cover[w.core_slices()] += 1
        t, b, l, r = w.core
        ot, ob, ol, or_ = w.outer
        assert (ot, ol) == (max(t - halo, 0), max(l - halo, 0))
        assert (ob, or_) == (min(b + halo, height), min(r + halo, width))
        inner_rows, inner_cols = w.core_in_outer()
        assert inner_rows.stop - inner_rows.start == b - t and inner_cols.stop - inner_cols.start == r - l
        assert inner_rows.start == t - ot and inner_cols.start == l - ol
    assert (cover == 1).all()
    # Raster order: rows of tiles, left to right.
    assert [w.core[:1] + w.core[2:3] for w in windows] == sorted(w.core[:1] + w.core[2:3] for w in windows)


def test_scaled_slices() -> None:
    w = tile_windows(8, 8, 4, 1)[3]
    assert w.core == (4, 8, 4, 8) and w.outer == (3, 8, 3, 8)
    assert w.core_slices(16) == (slice(64, 128), slice(64, 128))
    assert w.outer_slices(16) == (slice(48, 128), slice(48, 128))
    assert w.core_in_outer(16) == (slice(16, 80), slice(16, 80))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        tile_windows(4, 4, 0, 1)
    with pytest.raises(ValueError):
        tile_windows(4, 4, 2, -1)
