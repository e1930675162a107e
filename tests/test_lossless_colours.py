"""Palettes coded in the context of the index plane (udic.lossless.colours)."""

from __future__ import annotations

import numpy as np
import pytest

from udic.errors import ContainerError
from udic.lossless import colours


def _case(seed: int, size: int, channels: int, bit_depth: int, h: int = 20, w: int = 30):
    rng = np.random.default_rng(seed)
    index = rng.integers(0, size, (h, w))
    palette = rng.integers(0, 1 << bit_depth, (size, channels))
    return palette, index


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("bit_depth", [1, 8, 12, 16])
def test_round_trip(channels: int, bit_depth: int) -> None:
    palette, index = _case(channels * 100 + bit_depth, 37, channels, bit_depth)
    data = colours.encode(palette, index, bit_depth)
    assert colours.decode(data, index, 37, channels, bit_depth).tolist() == palette.tolist()


def test_colours_the_plane_never_uses_come_last() -> None:
    """Unused colours (a palette larger than its image's colours) follow the used ones in index
    order, each predicted by the colour decoded before it."""
    palette, index = _case(3, 12, 3, 8)
    index = index % 7  # colours 7 … 11 unused
    order, positions = colours._order(index, 12)
    assert order[-5:].tolist() == [7, 8, 9, 10, 11] and (positions[-5:] == -1).all()
    assert sorted(order.tolist()) == list(range(12))
    data = colours.encode(palette, index, 8)
    assert colours.decode(data, index, 12, 3, 8).tolist() == palette.tolist()


def test_order_and_neighbours_by_hand() -> None:
    index = np.array([[2, 2, 0], [1, 0, 2]])
    order, positions = colours._order(index, 4)
    assert order.tolist() == [2, 0, 1, 3] and positions.tolist() == [0, 2, 3, -1]
    west, north, north_west = colours._neighbours(index, positions)
    assert west.tolist() == [-1, 2, -1, -1] and north.tolist() == [-1, -1, 2, -1]
    assert north_west.tolist() == [-1, -1, -1, -1]
    assert colours._distinct(west, north, north_west).tolist() == [0, 1, 1, 0]
    assert colours._distinct(np.array([4]), np.array([4]), np.array([5])).tolist() == [2]


def test_median_edge_predictor_by_hand() -> None:
    """Colours in order of first use, from residuals and neighbour ranks (−1: none): none at all
    predicts from the colour before (zeros first), one neighbour alone is the prediction, three
    give the median edge predictor, and no pixel above left lets the one above stand in."""
    rw = np.array([-1, 0, -1, 0, 0, -1])
    rn = np.array([-1, -1, 1, 1, 1, -1])
    rnw = np.array([-1, -1, -1, 2, -1, -1])
    residuals = np.array([[10, 50, 5], [10, -10, 0], [-5, 20, -5], [1, 1, 1], [0, 0, 0], [2, 2, 2]])
    values = colours._reconstruct(residuals, rw, rn, rnw)
    assert values.tolist() == [[10, 50, 5], [20, 40, 5], [15, 60, 0],
                               [16, 41, 6],  # median of (10, 20 | 15) (50, 40 | 60) (5, 5 | 0) is 15, 40, 5
                               [10, 50, 5],  # west and north, no north-west: the west colour
                               [12, 52, 7]]  # no neighbour (unused): the colour before


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_long_chains_of_neighbours_round_trip(channels: int) -> None:
    """Runs of shared colours and unused colours after the used ones: colours depend on colours
    decoded many waves before them."""
    rng = np.random.default_rng(channels)
    index = rng.integers(0, 40, (30, 50))
    index[:, 10:20] = index[:, 9:10]
    palette = rng.integers(0, 256, (60, channels))  # colours 40 … 59 are never used
    palette[40:] = np.clip(palette[39] + np.arange(20)[:, None] * 3, 0, 255)
    data = colours.encode(palette, index, 8)
    assert colours.decode(data, index, 60, channels, 8).tolist() == palette.tolist()


def test_a_colour_outside_the_bit_depth_is_refused() -> None:
    """A residual that takes a colour past 255 (the encoder does not check what it is given)."""
    index = np.array([[0, 1, 1], [0, 0, 1]])
    palette = np.array([[200, 200, 200], [270, 200, 200]])
    data = colours.encode(palette, index, 8)
    with pytest.raises(ContainerError, match="outside the bit depth"):
        colours.decode(data, index, 2, 3, 8)


def test_a_truncated_stream_is_refused() -> None:
    palette, index = _case(6, 20, 3, 8)
    data = colours.encode(palette, index, 8)
    with pytest.raises(ContainerError):
        colours.decode(data[:-4], index, 20, 3, 8)
    with pytest.raises(ContainerError):
        colours.decode(data[:-1], index, 20, 3, 8)
