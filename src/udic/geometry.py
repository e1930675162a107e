"""The image ↔ latent grid geometry and the choice of synthesis tiles (spec §4, §4.1, §9).

One module so encoder, decoder, adaptation and the CLI's early checks agree on every
size, and so the CLI can check a ``--tile`` without importing torch.
"""

from __future__ import annotations

from .errors import UsageError

PAD_MULTIPLE = 64  # the image is padded to multiples of this (edge replication)
LATENT_STRIDE = 16  # pixels per latent position
HYPER_STRIDE = 64  # pixels per hyper-latent position
TILE_UNIT = 64  # the header's tile field counts pixels in these units
MAX_TILE = 255 * TILE_UNIT
# Images whose padded area exceeds AUTO_TILE_PIXELS are coded in tiles of DEFAULT_TILE
# pixels, which bounds memory (a whole-image synthesis of 24 MP would need ~20 GB).
DEFAULT_TILE = 1024
AUTO_TILE_PIXELS = 2048 * 2048
# The largest area synthesised in one piece (a whole image or one tile), encoder and
# decoder alike: ~0.85 GB of activations per megapixel, so 4096² needs ~14 GB.  A file
# asking for more is refused before anything is allocated (spec §9).
MAX_WINDOW_PIXELS = 4096 * 4096
# Halos cover the receptive fields with margin: g_a's residual network sees ±30 px,
# g_s's deconvolutions ±2 latent positions.
ANALYSIS_HALO = 64  # pixels
SYNTHESIS_HALO = 4  # latent positions


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE


def latent_grid(height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of the latents y of an image."""
    hp, wp = padded_size(height, width)
    return hp // LATENT_STRIDE, wp // LATENT_STRIDE


def hyper_grid(height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of the hyper-latents z of an image."""
    hp, wp = padded_size(height, width)
    return hp // HYPER_STRIDE, wp // HYPER_STRIDE


def window_pixels(height: int, width: int, tile: int) -> int:
    """Area synthesised in one piece for this tile side (0 = the whole padded image)."""
    hp, wp = padded_size(height, width)
    return hp * wp if tile == 0 else min(tile, hp) * min(tile, wp)


def choose_tile(height: int, width: int, tile: int | None = None) -> int:
    """Tile side in pixels for an image (0 = whole image); ``None`` picks automatically."""
    hp, wp = padded_size(height, width)
    if tile is None:
        tile = DEFAULT_TILE if hp * wp > AUTO_TILE_PIXELS else 0
    if tile < 0 or tile % TILE_UNIT or tile > MAX_TILE:
        raise UsageError(f"tile size must be 0 or a multiple of {TILE_UNIT} up to {MAX_TILE}, got {tile}")
    tile = 0 if tile >= max(hp, wp) else tile
    window = window_pixels(height, width, tile)
    if window > MAX_WINDOW_PIXELS:
        raise UsageError(f"tiles of {tile or 'the whole image'} would synthesise "
                         f"{window / 1e6:.0f} MP at once, over the "
                         f"{MAX_WINDOW_PIXELS / 1e6:.1f} MP limit (use --tile {DEFAULT_TILE})")
    return tile
