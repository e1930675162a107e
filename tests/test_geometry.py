"""udic.geometry: the grids an image's size implies, and the tile choice (spec §4, §4.1, §9)."""

from __future__ import annotations

import subprocess
import sys

from udic.geometry import hyper_grid, latent_grid, padded_size, window_pixels


def test_grids() -> None:
    assert padded_size(40, 56) == (64, 64)
    assert latent_grid(40, 130) == (4, 12) and hyper_grid(40, 130) == (1, 3)
    assert window_pixels(40, 130, 0) == 64 * 192 and window_pixels(300, 300, 128) == 128 * 128


def test_geometry_is_torch_free() -> None:
    """The CLI checks --tile before any model code loads."""
    code = "import sys, udic.geometry; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
