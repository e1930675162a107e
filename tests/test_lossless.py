"""Round trips, near-lossless bounds, determinism and damaged payloads for udic.lossless."""

from __future__ import annotations

import numpy as np
import pytest

from udic import lossless
from udic.errors import ContainerError
from udic.lossless import longcopy, raster, transforms

PLAIN = raster.CONTEXTS_PLAIN  # version 7's symbol contexts as versions ≤ 6 had them

RNG = np.random.default_rng(1234)


def _smooth(h: int, w: int, c: int, bit_depth: int = 8, seed: int = 0) -> np.ndarray:
    """A photo-like image: smooth gradients plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    maxval = (1 << bit_depth) - 1
    chans = []
    for k in range(c):
        base = 0.5 + 0.35 * np.sin(xx / (7 + 3 * k) + yy / 11) * np.cos(yy / (9 + k))
        chans.append(np.clip(base * maxval + rng.normal(0, maxval / 100, (h, w)), 0, maxval))
    return np.stack(chans, axis=2).round().astype(np.uint16 if bit_depth > 8 else np.uint8)


def _tiled(h: int, w: int) -> np.ndarray:
    """Pixel-art-like: a few 8×8 tiles repeated over the image, 6 colours."""
    rng = np.random.default_rng(7)
    colours = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    tiles = rng.integers(0, 6, (3, 8, 8))
    pick = rng.integers(0, 3, (h // 8 + 1, w // 8 + 1))
    idx = np.block([[tiles[pick[i, j]] for j in range(pick.shape[1])] for i in range(pick.shape[0])])[:h, :w]
    return colours[idx]


def _many_colours() -> np.ndarray:
    """300 random colours in 2×2 blocks: too many for a byte index, still a palette image."""
    rng = np.random.default_rng(11)
    colours = rng.integers(0, 256, (300, 3), dtype=np.uint8)
    blocks = np.arange(576) % 300
    rng.shuffle(blocks)
    return np.kron(colours[blocks.reshape(24, 24)], np.ones((2, 2, 1), np.uint8)).astype(np.uint8)


def _flat_art(h: int, w: int, channels: int = 3) -> np.ndarray:
    """Flat-colour shapes over a gradient background (> 4096 colours): pixel matching engages."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), (xx + yy) % 256, 255 - xx % 256], axis=2)
    img = np.repeat(np.repeat(img[::2, ::2], 2, axis=0), 2, axis=1)[:h, :w]
    img[(yy - h // 2) ** 2 + (xx - w // 3) ** 2 < (h // 3) ** 2] = (200, 30, 60, 128)
    img[h // 4 : h // 2, w // 2 :] = (10, 220, 90, 255)
    return img[:, :, :channels].astype(np.uint8)


def _tile_sheet(h: int, w: int, seed: int = 5) -> np.ndarray:
    """Many-colour 16×16 tiles (1×2 pixel blocks, > 4096 colours in all) on a sheet where tile
    (r, j) is tile (r − 1, j + 3): predictive mode with pixel matching, where only a copy offset
    ((16, −48) and its double) finds the repeats."""
    rng = np.random.default_rng(seed)
    tiles = np.repeat(rng.integers(0, 256, (40, 16, 8, 3), dtype=np.uint8), 2, axis=2)
    rows, cols = np.mgrid[0 : h // 16 + 1, 0 : w // 16 + 1]
    pick = (3 * rows + cols) % tiles.shape[0]
    rows = [np.concatenate([tiles[t] for t in row], axis=1) for row in pick]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:h, :w])


def _roundtrip(pixels: np.ndarray, bit_depth: int = 8, max_error: int = 0, effort: int = 1) -> bytes:
    payload = lossless.encode(pixels, bit_depth, max_error, effort)
    out = lossless.decode(payload)
    assert out.dtype == pixels.dtype and out.shape == pixels.shape
    if max_error == 0:
        np.testing.assert_array_equal(out, pixels)
    return payload


CASES = {
    "rgb": lambda: _smooth(48, 32, 3),
    "rgba": lambda: np.concatenate([_smooth(40, 36, 3), _smooth(40, 36, 1, seed=3)], axis=2),
    "gray": lambda: _smooth(33, 47, 1),
    "gray_alpha": lambda: _smooth(31, 29, 2),
    "palette": lambda: RNG.choice(np.array([0, 60, 200], np.uint8), (40, 40, 3)),
    "rgb16_random": lambda: RNG.integers(0, 1 << 16, (24, 20, 3), dtype=np.uint16),
    "rgb16_smooth": lambda: _smooth(40, 30, 3, 16),
    "gray16_smooth": lambda: _smooth(36, 28, 1, 16),
    "gray12_smooth": lambda: _smooth(36, 28, 1, 12),
    "one_column": lambda: _smooth(50, 1, 3),
    "one_row": lambda: _smooth(1, 64, 3),
    "one_pixel": lambda: np.array([[[12, 200, 7]]], np.uint8),
    "constant": lambda: np.full((37, 21, 4), 99, np.uint8),
    "noise": lambda: RNG.integers(0, 256, (32, 48, 3), dtype=np.uint8),
    "tiled": lambda: _tiled(64, 96),
    "many_colours_palette": lambda: _many_colours(),
    "binary": lambda: RNG.integers(0, 2, (30, 40, 1), dtype=np.uint8),
}
BIT_DEPTH = {"rgb16_random": 16, "rgb16_smooth": 16, "gray16_smooth": 16, "gray12_smooth": 12, "binary": 1}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("effort", [0, 1])
def test_exact_roundtrip(name: str, effort: int) -> None:
    _roundtrip(CASES[name](), BIT_DEPTH.get(name, 8), effort=effort)


def test_noise_payload_stays_near_raw_size() -> None:
    pixels = CASES["noise"]()
    assert len(_roundtrip(pixels)) <= pixels.nbytes + 32


def test_smooth_image_compresses() -> None:
    pixels = _smooth(64, 64, 3)
    assert len(_roundtrip(pixels)) < 0.7 * pixels.nbytes


def test_palette_and_tiles_use_palette_mode() -> None:
    payload = _roundtrip(CASES["tiled"]())
    info = lossless.describe(payload)
    assert info["mode"] in ("palette", "palette raster") and info["palette_size"] == 6


def test_effort_2_tries_the_match_stage_on_a_lossless_photo() -> None:
    """The match stage pays on lossless photos whatever their repeat share (Kodak: 0.98x the
    bytes) but slows their decoding by ~30 %: effort 2 codes both and keeps the smaller, effort
    1 keeps the faster form; at ±N (10-20 % larger with it) neither tries it."""
    pixels = _smooth(64, 72, 3)
    assert lossless._repeat_share(pixels) < lossless.MATCH_SHARE
    tried = []
    real = lossless._encode_predictive

    def spy(*args):
        tried.append((args[2], args[3], args[5]))  # max_error, effort, match
        return real(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lossless, "_encode_predictive", spy)
        for effort in (1, 2):
            _roundtrip(pixels, effort=effort)
            lossless.encode(pixels, 8, 2, effort)
    assert {m for e, f, m in tried if e == 0 and f == 2} == {True, False}
    assert not any(m for e, f, m in tried if e > 0 or f < 2)
    fast = lossless.describe(lossless.encode(pixels, 8, 0, 1))
    assert fast["mode"] == "predictive" and not fast["pixel_match"]


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("max_error", [0, 2])
def test_pixel_match_mode(channels: int, max_error: int) -> None:
    pixels = _flat_art(96, 80, channels)
    payload = lossless.encode(pixels, 8, max_error)
    info = lossless.describe(payload)
    # Flat art over a gradient of 2×2 blocks: the encoder may well prefer a palette form (the raster
    # scan with fresh literals codes each block's colour once); the predictive form with pixel
    # matching is exercised directly too.
    assert info["pixel_match"] and info["mode"] == "predictive" or info["mode"].startswith("palette")
    forced = lossless._encode_predictive(pixels, 8, max_error, 1, 0, True, [])
    assert lossless.describe(forced)["pixel_match"]
    for out in (lossless.decode(payload), lossless.decode(forced)):
        diff = np.abs(out.astype(int) - pixels.astype(int))
        assert diff[:, :, : 3 if channels >= 3 else 1].max() <= max_error
        if channels == 4:
            np.testing.assert_array_equal(out[:, :, 3], pixels[:, :, 3])
    assert payload == lossless.encode(pixels, 8, max_error)


def test_copy_offsets_find_repeated_tiles() -> None:
    from udic.lossless import find_offsets, pixel_keys

    pixels = _tile_sheet(96, 160)
    payload = _roundtrip(pixels)
    info = lossless.describe(payload)
    # The default encoder copies the tiles: with copy offsets (predictive, interlaced palette) or,
    # in the palette raster scan at effort 1, with long matches (one per repeated stretch).
    assert (info["pixel_match"] and info["copy_offsets"] > 0) or info.get("long_matches", 0) >= 16
    offsets = find_offsets(pixel_keys(pixels), lossless.MAX_OFFSETS)
    assert any(dy % 16 == 0 and dx % 16 == 0 for dy, dx in offsets)
    transform = lossless.transforms.YCOCG_R
    without = lossless._encode_predictive(pixels, 8, 0, 1, transform, True, [])
    with_offsets = lossless._encode_predictive(pixels, 8, 0, 1, transform, True, offsets)
    np.testing.assert_array_equal(lossless.decode(with_offsets), pixels)
    assert len(with_offsets) < 0.6 * len(without)


def test_copy_offsets_in_palette_mode() -> None:
    from udic.lossless import find_offsets, pixel_keys, transforms

    pixels = _tiled(96, 128)
    payload = _roundtrip(pixels)
    info = lossless.describe(payload)
    assert info["mode"] in ("palette", "palette raster") and info["pixel_match"] and info["copy_offsets"] > 0
    offsets = find_offsets(pixel_keys(pixels), lossless.MAX_OFFSETS)
    found = transforms.find_palette(pixels, lossless.MAX_PALETTE)
    interlaced = lossless._encode_palette(pixels, 8, 0, 1, found, True, offsets)
    assert lossless.describe(interlaced)["mode"] == "palette"
    np.testing.assert_array_equal(lossless.decode(interlaced), pixels)


def test_colour_naming_roundtrip() -> None:
    """Thin anti-aliased strokes of a few colours over flat fills: the match stage names colours."""
    pixels = _flat_art(96, 80, 3)
    rng = np.random.default_rng(3)
    strokes = np.array([[0, 0, 0], [250, 250, 250], [30, 140, 200]], np.uint8)
    for _ in range(60):
        y, x = rng.integers(0, 96), rng.integers(0, 80)
        pixels[y, x : x + 1] = strokes[rng.integers(0, 3)]
    for max_error in (0, 3):
        out = lossless.decode(lossless.encode(pixels, 8, max_error))
        assert np.abs(out.astype(int) - pixels.astype(int)).max() <= max_error


def test_large_palette_is_used() -> None:
    pixels = _many_colours()
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 256
    info = lossless.describe(_roundtrip(pixels))
    assert info["mode"] in ("palette", "palette raster") and info["palette_size"] > 256
    found = lossless.transforms.find_palette(pixels, lossless.MAX_PALETTE)
    interlaced = lossless._encode_palette(pixels, 8, 0, 1, found, False, [])  # mode 2 with > 256 entries
    assert lossless.describe(interlaced)["mode"] == "palette"
    np.testing.assert_array_equal(lossless.decode(interlaced), pixels)


@pytest.mark.parametrize("max_error", [1, 2, 4, 16])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_near_lossless_bound(max_error: int, channels: int) -> None:
    base = _smooth(40, 44, 4, seed=5)[:, :, :channels]
    payload = lossless.encode(base, 8, max_error)
    out = lossless.decode(payload)
    diff = np.abs(out.astype(int) - base.astype(int))
    colour = 3 if channels >= 3 else 1
    assert diff[:, :, :colour].max() <= max_error
    if channels in (2, 4):
        np.testing.assert_array_equal(out[:, :, -1], base[:, :, -1])
    assert lossless.describe(payload)["max_error"] == max_error


def test_near_lossless_16bit_bound() -> None:
    base = _smooth(30, 26, 3, 16)
    out = lossless.decode(lossless.encode(base, 16, 300))
    assert np.abs(out.astype(int) - base.astype(int)).max() <= 300


def test_near_lossless_shrinks_with_max_error() -> None:
    base = _smooth(48, 64, 3, seed=9)
    sizes = [len(lossless.encode(base, 8, n)) for n in (0, 1, 2, 4, 16)]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0] / 2


def _anti_aliased(h: int, w: int, seed: int = 3, alpha: bool = False) -> np.ndarray:
    """Flat-colour discs with anti-aliased edges (a few hundred shades): comic-like art."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.full((h, w, 3), 240.0)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, h / 2)
        cover = np.clip(r - np.hypot(yy - cy, xx - cx), 0, 1)[..., None]  # one-pixel soft edge
        img = img * (1 - cover) + rng.integers(0, 256, 3) * cover
    out = img.round().astype(np.uint8)
    if alpha:
        out = np.concatenate([out, np.where(xx < w / 2, 255, 128).astype(np.uint8)[..., None]], axis=2)
    return out


@pytest.mark.parametrize("max_error", [1, 4, 16])
@pytest.mark.parametrize("alpha", [False, True])
def test_reduce_colours_bound_and_map(max_error: int, alpha: bool) -> None:
    from udic.lossless import transforms

    art = _anti_aliased(48, 64, alpha=alpha)
    reduced = transforms.reduce_colours(art, max_error)
    assert reduced is not None and reduced.dtype == art.dtype and reduced.shape == art.shape
    assert np.abs(reduced[..., :3].astype(int) - art[..., :3]).max() <= max_error
    if alpha:
        np.testing.assert_array_equal(reduced[..., 3], art[..., 3])
    before = np.unique(art.reshape(-1, art.shape[2]), axis=0)
    after = np.unique(reduced.reshape(-1, art.shape[2]), axis=0)
    assert len(after) < len(before)
    # a function of the colour alone: equal pixels stay equal (repeats survive)
    keys = lossless.pixel_keys(art).ravel()
    mapped = lossless.pixel_keys(reduced).ravel()
    first = {}
    for k, m in zip(keys.tolist(), mapped.tolist()):
        assert first.setdefault(k, m) == m


def test_reduce_colours_refuses_too_many_colours() -> None:
    from udic.lossless import transforms

    assert transforms.reduce_colours(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8), 2, limit=100) is None


@pytest.mark.parametrize("max_error", [2, 8])
def test_near_lossless_merges_colours_on_flat_art(max_error: int) -> None:
    """On anti-aliased flat art the merged-palette form wins: smaller and closer than
    predictive near-lossless, within the bound, and the header keeps ±N."""
    art = _anti_aliased(64, 96)
    payload = lossless.encode(art, 8, max_error)
    info = lossless.describe(payload)
    assert info["mode"] in ("palette", "palette raster") and info["max_error"] == max_error
    out = lossless.decode(payload)
    assert np.abs(out.astype(int) - art).max() <= max_error
    predictive = lossless._encode_predictive(art, 8, max_error, 1, 3, False, [])
    assert len(payload) < len(predictive)
    assert len(payload) < len(lossless.encode(art, 8, 0))


def test_colour_merging_is_tried_on_flat_art_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Effort 1 tries merged colours where neighbours repeat or a few colours cover most of the
    image, and skips it on photo-like content (many colours, few repeats), where it never won."""
    noise = RNG.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    assert not lossless._merging_may_pay(noise, lossless._repeat_share(noise))
    # A two-colour checkerboard repeats no left/upper neighbour, yet two colours cover 90 %.
    board = np.where(((np.arange(48)[:, None] + np.arange(48)[None, :]) % 2 == 0)[..., None],
                     np.uint8(10), np.uint8(200)).repeat(3, axis=2).astype(np.uint8)
    sprinkled = board.copy()
    mask = RNG.random((48, 48)) < 0.1
    sprinkled[mask] = RNG.integers(0, 256, (int(mask.sum()), 3), dtype=np.uint8)
    assert lossless._repeat_share(sprinkled) < lossless.REDUCE_SHARE
    assert lossless._merging_may_pay(sprinkled, lossless._repeat_share(sprinkled))
    art = _anti_aliased(64, 96)
    assert lossless._merging_may_pay(art, lossless._repeat_share(art))

    def refuse(*args: object) -> bytes:
        raise AssertionError("colour merging tried on noise")

    monkeypatch.setattr(lossless, "_encode_reduced", refuse)
    assert np.abs(lossless.decode(lossless.encode(noise, 8, 4)).astype(int) - noise).max() <= 4
    with pytest.raises(AssertionError, match="merging tried"):
        lossless.encode(noise, 8, 4, effort=2)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_colour_counting_by_table_matches_sorting(monkeypatch: pytest.MonkeyPatch, channels: int) -> None:
    """8-bit images count colours in a table: the same colours, order, indices and counts as
    np.unique's sort of the 16-bit-per-channel keys, and so the same palette."""
    from udic.lossless import transforms

    art = (RNG.integers(0, 7, (96, 80, channels)) * 37).astype(np.uint8)
    flat = art.reshape(-1, channels).astype(np.int64)
    key = np.zeros(flat.shape[0], dtype=np.int64)
    for ch in range(channels):
        key = (key << 16) | flat[:, ch]
    expected = np.unique(key, return_inverse=True, return_counts=True)
    got = transforms._distinct_by_table(flat, channels)
    assert all(np.array_equal(a.ravel(), b.ravel()) for a, b in zip(expected, got))
    if channels == 3:  # RGB takes the table only on large images: both paths, one palette
        monkeypatch.setattr(transforms, "TABLE_MIN_PIXELS", 1 << 40)
        by_sort = transforms.find_palette(art, 4096)
        monkeypatch.setattr(transforms, "TABLE_MIN_PIXELS", 1)
        by_table = transforms.find_palette(art, 4096)
        assert np.array_equal(by_sort[0], by_table[0]) and np.array_equal(by_sort[1], by_table[1])
    assert transforms.find_palette(art, 5) is None  # 7 colours (more with more channels)


def test_context_counts_match_unique() -> None:
    for values in (RNG.integers(0, 50, 999), RNG.integers(0, 1 << 40, 999), np.zeros(0, np.int64)):
        assert np.array_equal(raster._counts(values), np.unique(values, return_counts=True)[1])


def test_deterministic() -> None:
    pixels = np.concatenate([_smooth(40, 36, 3), _smooth(40, 36, 1, seed=3)], axis=2)
    assert lossless.encode(pixels) == lossless.encode(pixels)
    assert lossless.encode(pixels, 8, 3) == lossless.encode(pixels, 8, 3)


def test_describe_reports_header() -> None:
    payload = lossless.encode(_smooth(40, 60, 3))
    info = lossless.describe(payload)
    assert (info["width"], info["height"], info["channels"], info["bit_depth"]) == (60, 40, 3, 8)
    assert info["mode"] == "predictive" and info["payload_bytes"] == len(payload)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((4, 4, 3), np.int32), np.full((2, 2, 1), 9, np.uint8)])
def test_encode_rejects_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        lossless.encode(bad, bit_depth=3)


PAYLOADS = {
    "predictive": lambda: lossless._encode_predictive(np.concatenate([_smooth(40, 44, 3), _smooth(40, 44, 1, seed=3)], axis=2),
                                                      8, 0, 1, lossless.transforms.YCOCG_R, False, []),
    "palette": lambda: lossless._encode_palette(_tiled(24, 32), 8, 0, 1, lossless.transforms.find_palette(_tiled(24, 32), 4096),
                                                False, []),
    "stored": lambda: lossless.encode(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)),
    "near": lambda: lossless.encode(_smooth(24, 20, 3), 8, 2),
    "wide": lambda: lossless.encode(_smooth(16, 12, 1, 16), 16),
    "match": lambda: lossless._encode_predictive(_flat_art(40, 36, 4), 8, 0, 1, 0, True, []),
    "offsets": lambda: _predictive_with_offsets(_tile_sheet(48, 64)),
    "raster": lambda: _raster_payload(_tiled(24, 40)),
    "raster_free": lambda: _raster_payload(_glyphs(30, 48), [], 2),
    "raster_carry": lambda: _raster_payload(_glyphs(30, 48), [(1, 0)], 1),
    "raster_cache": lambda: _raster_payload(_banded(40, 60), [], 0, 1),
    "raster_fresh": lambda: _raster_payload(_banded(40, 60), [], 0, 2),
    "raster_cache_fresh": lambda: _raster_payload(_banded(40, 60), [(1, 0)], 1, 3),
    "coded_palette": lambda: _raster_payload(_banded(24, 32, 4, 1), [], 0, 0),
    "raster_long": lambda: _long_payload(_glyphs(40, 64)),
}
# What each kind is there to exercise (the encoder's own choice moves as the format improves).
PAYLOAD_MODES = {"predictive": "predictive", "palette": "palette", "stored": "stored", "near": "predictive",
                 "match": "predictive", "offsets": "predictive", "coded_palette": "palette raster"}


def _predictive_with_offsets(pixels: np.ndarray) -> bytes:
    from udic.lossless import find_offsets, pixel_keys

    offsets = find_offsets(pixel_keys(pixels), lossless.MAX_OFFSETS)
    return lossless._encode_predictive(pixels, 8, 0, 1, lossless.transforms.YCOCG_R, True, offsets)


def test_payload_kinds_exercise_their_modes() -> None:
    infos = {kind: lossless.describe(make()) for kind, make in PAYLOADS.items()}
    for kind, mode in PAYLOAD_MODES.items():
        assert infos[kind]["mode"] == mode, kind
    assert infos["match"]["pixel_match"] and infos["offsets"]["copy_offsets"] > 0
    assert infos["coded_palette"]["palette_coded"]
    assert infos["raster_cache"]["literal_cache"] and infos["raster_fresh"]["fresh_literals"]
    assert infos["raster_long"]["long_matches"] > 0 and infos["raster"]["long_matches"] == 0


def _raster_payload(pixels: np.ndarray, offsets: list[tuple[int, int]] | None = None, lz: int = 1,
                    literals: int | None = None, contexts: int = raster.CONTEXTS_ROWS) -> bytes:
    from udic.lossless import find_offsets, pixel_keys, transforms

    found = lossless._raster_order(transforms.find_palette(pixels, lossless.MAX_PALETTE))
    if offsets is None:
        offsets = find_offsets(pixel_keys(pixels), lossless.MAX_OFFSETS)
    return lossless._encode_raster(pixels, 8, 0, found, offsets, lz, 1, literals, contexts=contexts)


OLD_SEARCH = (4, 3.0)  # the effort 1 parse of versions 9 and 10 (longcopy.SEARCH)


def _long_payload(pixels: np.ndarray, offsets: list[tuple[int, int]] | None = None,
                  min_gain: float = longcopy.MIN_GAIN_BITS, literals: int | None = None,
                  search: tuple[int, float] | None = None) -> bytes:
    """A palette raster payload with the long matches the encoder finds (free copies off)."""
    from udic.lossless import transforms

    found = lossless._raster_order(transforms.find_palette(pixels, lossless.MAX_RASTER_PALETTE))
    offsets = [] if offsets is None else offsets
    scan = raster.symbols(found[1], offsets, raster.LZ_OFF)
    long = longcopy.find_long_matches(found[1], longcopy.pixel_costs(scan, len(offsets), found[0].shape[0]), min_gain,
                                      search=search)
    assert len(long) > 0
    return lossless._encode_raster(pixels, 8, 0, found, offsets, raster.LZ_OFF, 1, literals, long=long)


def _banded(h: int, w: int, jitter: int = 4, width: int = 2, seed: int = 3) -> np.ndarray:
    """Gradient art (a wallpaper's colour bands): many colours in diagonal bands with wandering
    edges, so a literal mostly takes one of the few colours seen before under the same colour
    above (the literal cache pays)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    k = (xx + 2 * yy + rng.integers(0, jitter, (h, w))) // width
    return np.stack([40 + k % 200, 60 + k // 2 % 150, 90 + k // 3 % 120], axis=-1).astype(np.uint8)


def _glyphs(h: int, w: int) -> np.ndarray:
    """Text-like: five random 8×9 'glyphs' in lines that start at random columns (free copy offsets)."""
    rng = np.random.default_rng(21)
    glyphs = rng.integers(0, 2, (5, 9, 8)) * rng.integers(1, 4, (5, 1, 1))
    img = np.zeros((h, w), np.int64)
    y = 1
    while y + 9 < h:
        x = int(rng.integers(0, 6))
        while x + 8 < w:
            img[y : y + 9, x : x + 8] = glyphs[rng.integers(0, 5)]
            x += 10
        y += 11
    colours = np.array([[250, 250, 250], [0, 0, 0], [30, 60, 200], [200, 20, 20]], np.uint8)
    return colours[img]


@pytest.mark.parametrize("lz", [0, 1, 2])
@pytest.mark.parametrize("offsets", [None, [], [(0, 8), (1, 0), (8, -8), (0, 1)]])
def test_palette_raster_roundtrip(offsets, lz: int) -> None:
    for pixels in (_tiled(64, 96), _many_colours(), CASES["binary"]() * 255, _tiled(1, 40), _tiled(33, 1),
                   _glyphs(40, 90)):
        payload = _raster_payload(pixels, offsets, lz)
        assert lossless.describe(payload)["mode"] == "palette raster"
        np.testing.assert_array_equal(lossless.decode(payload), pixels)


def test_literal_cache_lists_follow_the_spec() -> None:
    """Escapes join the list of the colour above in column order, once, up to 16 entries; a row's
    lookups see the lists as they were when the row started."""
    from udic.lossless.raster import CACHE_SIZE, LiteralCache

    cache = LiteralCache(5)
    cache.update(np.array([1, 1, 2, 1, 1, 5]), np.array([3, 3, 4, 0, 3, 2]))
    assert cache.table[1, :2].tolist() == [3, 0] and cache.length.tolist() == [0, 2, 1, 0, 0, 1]
    assert cache.ranks(np.array([1, 1, 2, 3]), np.array([0, 4, 4, 4])).tolist() == [1, CACHE_SIZE, 0, CACHE_SIZE]
    np.testing.assert_array_equal(cache.lookup(np.array([1, 5]), np.array([1, 0])), [0, 2])
    with pytest.raises(ContainerError):
        cache.lookup(np.array([1]), np.array([2]))
    cache.update(np.full(30, 4), np.arange(30) % 20)  # more than 16 new colours under colour 4
    assert cache.length[4] == CACHE_SIZE and cache.table[4].tolist() == list(range(16))


def test_literal_cache_bulk_update_matches_the_loop() -> None:
    """Large updates run in numpy, small ones as a loop: the lists must come out the same."""
    from udic.lossless import raster

    rng = np.random.default_rng(2)
    bulk, loop = raster.LiteralCache(12), raster.LiteralCache(12)
    for _ in range(40):
        n = int(rng.integers(raster.SMALL_UPDATE + 1, 80))
        above, values = rng.integers(0, 13, n), rng.integers(0, 12, n)
        bulk.update(above, values)
        for i in range(0, n, raster.SMALL_UPDATE):
            loop.update(above[i : i + raster.SMALL_UPDATE], values[i : i + raster.SMALL_UPDATE])
        np.testing.assert_array_equal(bulk.table, loop.table)
        np.testing.assert_array_equal(bulk.length, loop.length)


def test_literal_cache_round_trips_and_pays_on_gradient_bands() -> None:
    pixels = _banded(64, 96)
    plain, cached, chosen = (_raster_payload(pixels, [], 0, lit) for lit in (0, 1, None))
    assert lossless.describe(cached)["literal_cache"] and not lossless.describe(plain)["literal_cache"]
    assert len(cached) < 0.8 * len(plain) and lossless.describe(chosen)["literal_cache"]
    for payload in (plain, cached):
        np.testing.assert_array_equal(lossless.decode(payload), pixels)
    for lz in (1, 2):
        np.testing.assert_array_equal(lossless.decode(_raster_payload(_glyphs(40, 90), None, lz, 1)), _glyphs(40, 90))


@pytest.mark.parametrize("literals", [2, 3])
@pytest.mark.parametrize("lz", [0, 1, 2])
def test_fresh_literals_round_trip(literals: int, lz: int) -> None:
    """Fresh literals (version 6): the palette goes in order of first use, a colour's first use is
    a flag; with and without the cache, under every free copy mode."""
    for pixels in (_banded(40, 60), _glyphs(30, 48), _tiled(24, 40)):
        payload = _raster_payload(pixels, None, lz, literals)
        info = lossless.describe(payload)
        assert info["fresh_literals"] and info["literal_cache"] == bool(literals & 1)
        np.testing.assert_array_equal(lossless.decode(payload), pixels)


def test_fresh_literals_spend_no_index_on_a_colours_first_use() -> None:
    """Scattered blobs of 150 random colours: each colour's first use costs a flag instead of an
    index that no count predicts."""
    rng = np.random.default_rng(4)
    pixels = np.full((72, 96, 3), 255, np.uint8)
    colours = rng.integers(0, 256, (150, 3), dtype=np.uint8)  # random: no palette order codes better
    for k in range(300):  # 2×3 blobs, each colour twice
        y, x = int(rng.integers(0, 70)), int(rng.integers(0, 93))
        pixels[y : y + 2, x : x + 3] = colours[k % 150]
    plain, fresh = (_raster_payload(pixels, [], 0, lit) for lit in (0, 2))
    assert len(fresh) < 0.95 * len(plain)
    assert lossless.describe(_raster_payload(pixels, [], 0))["fresh_literals"]
    np.testing.assert_array_equal(lossless.decode(fresh), pixels)


def test_a_first_use_palette_is_not_tried_as_a_nested_payload_below_effort_2(monkeypatch) -> None:
    """In first-use order neighbouring entries do not predict each other: effort ≤ 1 writes such a
    palette raw or in context without encoding the nested predictive payload; effort 2 tries it."""
    rng = np.random.default_rng(5)
    pixels = np.full((40, 60, 3), 255, np.uint8)
    colours = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    for k in range(120):
        y, x = int(rng.integers(0, 38)), int(rng.integers(0, 57))
        pixels[y : y + 2, x : x + 3] = colours[k % 40]
    nested = []
    real = lossless._palette_payload
    monkeypatch.setattr(lossless, "_palette_payload", lambda *a: nested.append(a[0].shape) or real(*a))
    found = lossless._raster_order(transforms.find_palette(pixels, lossless.MAX_PALETTE))
    for effort, literals in ((1, raster.LITERALS_FRESH), (1, raster.LITERALS_PLAIN), (2, raster.LITERALS_FRESH)):
        nested.clear()
        payload = lossless._encode_raster(pixels, 8, 0, found, [], raster.LZ_OFF, effort, literals)
        assert bool(nested) == (effort == 2 or literals == raster.LITERALS_PLAIN), (effort, literals)
        assert lossless.describe(payload)["fresh_literals"] == bool(literals & raster.LITERALS_FRESH)
        np.testing.assert_array_equal(lossless.decode(payload), pixels)
    # Left to choose, effort 1 takes fresh literals on 2 × 2 blocks of 1,024 smooth colours (each
    # first use saves a 10-bit index; the palette in context is small) without working out the
    # sorted palette's nested payload: the plain literals alone cost more than the fresh ones with
    # their palette.
    by, bx = np.mgrid[0:64, 0:64] // 2
    blocks = np.stack([250 - 4 * by, 4 * bx + 1, 255 - 2 * (by + bx)], axis=-1).astype(np.uint8)  # sorted ≠ first use
    found = lossless._raster_order(transforms.find_palette(blocks, lossless.MAX_RASTER_PALETTE))
    nested.clear()
    chosen = lossless._encode_raster(blocks, 8, 0, found, [], raster.LZ_OFF, 1)
    assert lossless.describe(chosen)["fresh_literals"] and not nested
    np.testing.assert_array_equal(lossless.decode(chosen), blocks)


def test_row_contexts_by_hand() -> None:
    """The first phase's refinement: busy symbols (neither left nor the first pixel above) of the
    row above within ±4 columns, capped at 3, times 4, plus the class of the symbol two rows up."""
    above = np.array([0, 5, 0, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3, 4])
    above2 = np.array([0, 1, 2, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    busy = [1, 9, 11, 12, 13]  # column 10 holds symbol 1, which is not busy
    busy_near = [sum(abs(b - x) <= 4 for b in busy) for x in range(14)]
    assert busy_near == [1, 1, 1, 1, 1, 2, 1, 2, 3, 4, 4, 4, 4, 4]
    cls = [0, 1, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    want = [min(a, 3) * 4 + c for a, c in zip(busy_near, cls)]
    assert raster.row_contexts(above, above2).tolist() == want
    assert raster.row_contexts(above, None).tolist() == [min(a, 3) * 4 + 3 for a in busy_near]
    for width in (1, 2, 5, 8):  # narrower than the window
        narrow, narrow2 = above[-width:], above2[-width:]
        near = [sum(int(narrow[j] > 1) for j in range(width) if abs(j - x) <= 4) for x in range(width)]
        expect = [min(a, 3) * 4 + min(int(c), 2) for a, c in zip(near, narrow2)]
        assert raster.row_contexts(narrow, narrow2).tolist() == expect
    sym = np.stack([above2, above, above2])  # the encoder's whole-image bins, row by row
    ctx = np.arange(sym.size).reshape(sym.shape)
    bins = raster.first_phase_contexts(sym, ctx, raster.CONTEXTS_ROWS)
    assert bins[0].tolist() == (ctx[0] * 16 + 3).tolist()
    assert bins[2].tolist() == (ctx[2] * 16 + np.array(want)).tolist()


@pytest.mark.parametrize("lz, literals", [(0, 0), (1, 3), (2, 2)])
def test_row_contexts_round_trip_and_save_bytes(lz: int, literals: int) -> None:
    """Version 7's row contexts decode exactly with every free-copy mode and literal coding, and
    on text-like art they code the symbols in fewer bytes than the plain contexts."""
    pixels = _glyphs(60, 96)
    rows = _raster_payload(pixels, [], lz, literals)
    plain = _raster_payload(pixels, [], lz, literals, PLAIN)
    np.testing.assert_array_equal(lossless.decode(rows), pixels)
    np.testing.assert_array_equal(lossless.decode(plain), pixels)
    assert lossless.describe(rows)["row_contexts"] and not lossless.describe(plain)["row_contexts"]
    assert len(rows) < len(plain)


@pytest.mark.parametrize("image, offsets_pay", [("glyphs", False), ("sheet", True)])
def test_the_raster_scan_keeps_copy_offsets_only_where_they_pay(image: str, offsets_pay: bool) -> None:
    """Copy offsets widen the raster scan's alphabet: on text-like art, where left / above and the
    literal cache already find the repeats, the scan without them is smaller; on a tile sheet whose
    repeats only an offset reaches, the offsets pay.  Effort 2 encodes both and keeps the smaller
    (long matches may take it further); effort 1 leaves the tiles to long matches and never
    writes copy offsets in this mode."""
    from udic.lossless import find_offsets, pixel_keys, transforms

    pixels = _glyphs(60, 96) if image == "glyphs" else _tile_sheet(96, 160)
    found = lossless._raster_order(transforms.find_palette(pixels, lossless.MAX_RASTER_PALETTE))
    offsets = find_offsets(pixel_keys(pixels), lossless.MAX_OFFSETS)
    assert offsets
    with_offsets = lossless._encode_raster(pixels, 8, 0, found, offsets, raster.LZ_OFF, 1)
    bare = lossless._encode_raster(pixels, 8, 0, found, [], raster.LZ_OFF, 1)
    assert (len(with_offsets) < len(bare)) == offsets_pay
    stored = lossless._encode_stored(pixels, 8, 0)
    thorough = lossless._raster_forms(pixels, 8, 0, 2, found, offsets, stored)
    assert len(thorough) <= min(len(with_offsets), len(bare))
    quick = lossless._raster_forms(pixels, 8, 0, 1, found, offsets, stored)
    assert lossless.describe(quick)["copy_offsets"] == 0
    assert len(quick) == len(bare) or lossless.describe(quick)["long_matches"] > 0
    assert len(quick) <= len(bare)
    for kept in (thorough, quick):
        np.testing.assert_array_equal(lossless.decode(kept), pixels)


def test_effort_1_raster_scan_is_the_long_form_without_copy_offsets() -> None:
    """Effort 1 codes the raster scan once, with long matches and no copy offsets (session 32:
    smaller on every dev set, for less time), and where no long match pays, the plain scan."""
    from udic.lossless import transforms

    pixels = _tile_sheet(96, 160)
    found = lossless._raster_order(transforms.find_palette(pixels, lossless.MAX_RASTER_PALETTE))
    stored = lossless._encode_stored(pixels, 8, 0)
    kept = lossless._raster_forms(pixels, 8, 0, 1, found, [], stored)
    scan = raster.symbols(found[1], [], raster.LZ_OFF)
    long = lossless._long_form(pixels, 8, 0, 1, found, [], scan)
    assert long is not None and kept == long
    flat = np.zeros((40, 64, 3), np.uint8)
    flat[:, 32:] = 200  # two fills: nothing for a long match to save over left / above
    found = lossless._raster_order(transforms.find_palette(flat, lossless.MAX_RASTER_PALETTE))
    scan = raster.symbols(found[1], [], raster.LZ_OFF)
    assert lossless._long_form(flat, 8, 0, 1, found, [], scan) is None
    kept = lossless._raster_forms(flat, 8, 0, 1, found, [], lossless._encode_stored(flat, 8, 0))
    assert kept == lossless._encode_raster(flat, 8, 0, found, [], raster.LZ_OFF, 1, None, scan)
    np.testing.assert_array_equal(lossless.decode(kept), flat)


def test_an_unknown_symbol_contexts_byte_is_refused() -> None:
    from udic.lossless.payload import Reader

    payload = _raster_payload(_glyphs(30, 48), [], 1, 0)
    reader = Reader(payload)
    header = lossless._read_header(reader, None)
    lossless._read_bands(reader, header)
    lossless._read_palette(reader, header, reader.varint())
    lossless._read_match(reader, header["height"], header["width"])
    reader.u8()
    reader.u8()
    assert payload[reader.pos] == raster.CONTEXTS_ROWS
    bad = payload[:reader.pos] + bytes([2]) + payload[reader.pos + 1:]
    with pytest.raises(ContainerError, match="symbol contexts 2 is invalid"):
        lossless.decode(bad)


def test_first_use_order_is_what_fresh_literals_need() -> None:
    from udic.lossless import raster

    palette = np.array([[9, 9, 9], [1, 1, 1], [5, 5, 5], [7, 7, 7]], np.uint8)
    index = np.array([[2, 2, 0], [1, 0, 2]])
    ordered, remapped, rank = lossless._first_use_order((palette, index))
    assert remapped.tolist() == [[0, 0, 1], [2, 1, 0]] and rank.tolist() == [1, 2, 0, 3]
    assert ordered.tolist() == [[5, 5, 5], [9, 9, 9], [1, 1, 1], [7, 7, 7]]  # unused colour last
    assert raster.first_uses(np.array([3, 1, 4, 3, 5]), 3).tolist() == [True, False, True, False, True]
    with pytest.raises(ValueError, match="order of first use"):
        raster.first_uses(np.array([4, 3]), 3)


@pytest.mark.parametrize("flag", [False, True])
def test_fresh_literals_that_break_first_use_are_refused(monkeypatch, flag: bool) -> None:
    """A literal that names a colour before its first use, or first uses beyond the palette, are a
    damaged payload (made here by an encoder that flags every literal one way)."""
    from udic.lossless import raster

    monkeypatch.setattr(raster, "first_uses", lambda lits, used: np.full(lits.size, flag))
    colours = np.array([[200, 10, 10], [10, 200, 10], [10, 10, 200]], np.uint8)
    payload = _raster_payload(colours[np.arange(12) % 3][None], [], 0, 2)  # 12 literals, 3 colours
    monkeypatch.undo()
    with pytest.raises(ContainerError, match="before its first use" if not flag else "more colours"):
        lossless.decode(payload)


def test_palettes_are_coded_when_smaller() -> None:
    """A gradient's 100-odd colours, sorted, code in far fewer bytes than 3 per colour; an
    8-colour palette stays raw (and keeps frequency order)."""
    pixels = _banded(64, 96)
    payload = _raster_payload(pixels, [], 0, 1)  # sorted (fresh literals reorder it by first use)
    np.testing.assert_array_equal(lossless.decode(payload), pixels)
    info = lossless.describe(payload)
    assert info["palette_coded"] and info["palette_size"] > 100
    palette = np.unique(pixels.reshape(-1, 3), axis=0)
    coded = lossless._palette_payload(palette, 8, 1)
    assert len(coded) < 0.7 * palette.size and lossless.decode(coded).reshape(-1, 3).tolist() == palette.tolist()
    assert not lossless.describe(_roundtrip(_tiled(24, 32)))["palette_coded"]


def test_a_coded_palette_of_the_wrong_shape_is_refused(monkeypatch) -> None:
    from udic.lossless.payload import Reader, write_varint

    pixels = _banded(24, 32, 4, 1)
    monkeypatch.setattr(lossless, "_in_context_cached", lambda *args: bytes(1 << 16))  # the nested coding wins
    payload = _raster_payload(pixels, [], 0, 0)
    monkeypatch.undo()
    reader = Reader(payload)
    lossless._read_bands(reader, lossless._read_header(reader, None))
    size = reader.varint()
    assert reader.u8() == lossless.PALETTE_CODED
    at = reader.pos
    length = reader.varint()
    tail = payload[reader.pos + length :]
    wrong = {
        "size": lossless._encode_stored(np.zeros((1, size - 1, 3), np.uint8), 8, 0),
        "mode": lossless.encode(np.zeros((1, size, 3), np.uint8)),  # a palette payload itself
        "depth": lossless._encode_stored(np.zeros((1, size, 3), np.uint8), 7, 0),
    }
    assert lossless.describe(wrong["mode"])["mode"] in ("palette", "palette raster")
    for nested in wrong.values():
        with pytest.raises(ContainerError, match="coded palette"):
            lossless.decode(payload[:at] + write_varint(len(nested)) + nested + tail)


def test_palette_raster_takes_more_than_4096_colours() -> None:
    """5 000 random colours in runs of 8 along rows: only the raster scan's larger palette fits."""
    rng = np.random.default_rng(12)
    colours = rng.integers(0, 256, (5000, 3), dtype=np.uint8)
    runs = np.concatenate([np.arange(5000), rng.integers(0, 5000, 200 * 200 // 8 - 5000)])
    pixels = np.repeat(colours[runs], 8, axis=0).reshape(200, 200, 3)
    payload = _roundtrip(pixels)
    info = lossless.describe(payload)
    assert info["mode"] == "palette raster" and info["palette_size"] > 4096


def test_free_copies_shrink_scattered_textures() -> None:
    """Three noisy 12×12 textures stamped at random places: only free copy offsets find them."""
    rng = np.random.default_rng(8)
    colours = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    stamps = rng.integers(1, 40, (3, 12, 12))
    img = np.zeros((120, 200), np.int64)
    for _ in range(60):
        y, x = int(rng.integers(0, 108)), int(rng.integers(0, 188))
        img[y : y + 12, x : x + 12] = stamps[rng.integers(0, 3)]
    pixels = colours[img]
    plain = _raster_payload(pixels, [], 0)
    assert len(_raster_payload(pixels, [], 1)) < 0.7 * len(plain)
    assert len(_raster_payload(pixels, [], 2)) < 0.7 * len(plain)


def test_palette_raster_is_chosen_for_runs() -> None:
    """Wide flat rows with a few colour changes: the raster scan beats the interlaced one."""
    rng = np.random.default_rng(4)
    colours = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    rows = np.repeat(rng.integers(0, 40, (12, 1)), 160, axis=1)
    rows[:, 80:] = rng.integers(0, 40, (12, 1))
    pixels = colours[np.repeat(rows, 6, axis=0)]
    pixels[::7, ::13] = colours[rng.integers(0, 40, pixels[::7, ::13].shape[:2])]
    payload = _roundtrip(pixels)
    assert lossless.describe(payload)["mode"] == "palette raster"


def _decode_or_container_error(data: bytes) -> None:
    try:
        lossless.decode(data, max_pixels=1 << 20)
    except ContainerError as err:
        assert "\n" not in str(err)


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_truncation_is_refused(kind: str) -> None:
    payload = PAYLOADS[kind]()
    for cut in sorted(set(range(0, len(payload), max(1, len(payload) // 60))) | {len(payload) - 1}):
        with pytest.raises(ContainerError):
            lossless.decode(payload[:cut])


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_trailing_garbage_is_refused(kind: str) -> None:
    payload = PAYLOADS[kind]()
    for extra in (b"\x01", b"\x00\x00\x00\x01", b"\x07" * 8):
        with pytest.raises(ContainerError):
            lossless.decode(payload + extra)


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_corruption_never_escapes_as_another_exception(kind: str) -> None:
    payload = PAYLOADS[kind]()
    rng = np.random.default_rng(99)
    for pos in sorted(set(range(0, len(payload), max(1, len(payload) // 80)))):
        for flip in (0xFF, 1 << int(rng.integers(0, 8))):
            damaged = bytearray(payload)
            damaged[pos] ^= flip
            _decode_or_container_error(bytes(damaged))


def test_size_limits_refused_before_allocation() -> None:
    payload = lossless.encode(_smooth(20, 30, 3))
    with pytest.raises(ContainerError):
        lossless.decode(payload, max_pixels=599)
    huge = bytes([lossless.VERSION, 1]) + bytes([0x80, 0x80, 0x40]) + bytes([0x80, 0x80, 0x40]) + bytes([3, 8, 0, 0])
    with pytest.raises(ContainerError):
        lossless.decode(huge)
    with pytest.raises(ContainerError):
        lossless.decode(b"")
    with pytest.raises(ContainerError):
        lossless.decode(bytes([lossless.VERSION + 1]) + payload[1:])


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, udic.lossless; print('torch' in sys.modules or 'compressai' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# Version 2 payloads (static per-image tables), made by the version 2 encoder: still decoded.
V2_PAYLOADS = {
    "match": "eNqFkD+I1EAUxt/Evb1Mbjdks9k1jMuwHGItnNNI4MR/zTVnYxEQ3E4Q4co0oo1b2GmRwuqWw0JBQRgsjFhoY50iWFjpoRYHkyHEEGIYdzeCf+7A71W/7733wXuaZjstHWDzPfXuGh99BQAKiKaAtRREpoLEUiBtRUGrKWnVNLFrKp3ag1blkXblJU7lyWHlQ7v0iV76ybD0pVsGoBcBMYogcYtAkiIEIw9JJw8TkodylHPoZJyYGZ8OMz5zMx6RjCejjEuaxWDKmFgynroynhEZRyMZJ1TGcixTsERKbJFOiUhnI5FGVKTJWKRyXcB2W1HWrsPIzeGmrmBqKJh1lMf0ymdGGbBOETIz58zKYmbLlDmCRlaNNAQawBj9R/Pf4DN9WKqhjePoN2kbZGn2us0IbajX0PqS+r/WTywJ44ZOHjMRcuCwEBrAkTY6ooNxD3f/ikGLmtuDw+EY9/+IWBy3KIy7g+6/o8721+fvtl7KO6/tlcsfPp2+gg7Obr64F6xdf3PpxoOtp47+5NrVydvz91fWTkFv58LkALuvVi8+5Lu3HtPPYufZuUf7P76t3t7b//J9Mv8z/ARG46Rz",
    "palette": "eNpjYpIQYOZgYGB7mvSTbcHULLX13V5P95xd/3GlIyMTBz+DAoMCIwHAwMDAJSUqzQukGZR1QVweSSleUU4wlwEqLyklyQtkSYHluRh4GRlB8sKyYC4nEDAAWbxgLo8gIy9YF6MsRDePICeIYmCQ5BXkZOZhYgRbBQK8ooyc4ox8MC4jA6O4oCgSn5GRl5MRRR5oDyM3kjzCLIgAQi0nJ8RvSEDhWPVqzuJVKiqT8zYeE6nRs1WINixa/E46eQ5rkdVnXg3fA8VNVT8khQ0z+u/pcXWsuGe067bD+rWbp2pXnTTwjZ7RUBRsUhrw8Gtd6zvZM27mXFOXmRefOmfJlbxM9y7PoV/1t+TyrMX/zpKtVJN3dbBx3bhW4fCTGyL7Bf5VZma0MQMdAADw/Uh/",
    "predictive": "eNoNwelOwjAAAGCif4zxoY1GY6IRiUcAOXa0sO4oo+2ubuvWDTY2ghjRqG+j33fUOT07Pul0zi8u726vhr0ufHnE2jQ21ArPdpztBfkoveurm6fe/XDYt+CAIiCYWSX2rmCfWfC7W3Uf7qeDZ6gOCdJSF638ZRPStzI6VPH3Xj69TNSpYgM1sGeZZ9cBa4vovUq+6uxn0w4mExNozDRi4sjUrkS0L/lhJb725eG91aAyR4CSReKzNGFVlra52LXlZl02260OTYRwSEnoWxnnhUwbmTeNrDeVqBuoI2w6nuf7Ps15wov0n8ylKGS+ruHcQTbGjusGAeFxFMVRIjgXNJGBlJrhWEsLOcyizKUBCULXjx0vRF4GRahAA+gYIKpjghwC6BISb7bwxzhW7bCvgJGyGBvWxLIUQEZwoeh4DN3XKRno5A91mPqK",
}
V2_IMAGES = {"match": lambda: _flat_art(20, 18, 4), "palette": lambda: _tiled(16, 24), "predictive": lambda: _smooth(12, 10, 3)}


# Version 3 payloads (palette raster without free copies), made by the version 3 encoder: still decoded.
V3_PAYLOADS = {
    "raster": "eNoBxgE5/gMDKBgDCAAABmomrwagleVi+YtK5bzNr/GpQQECCAAAEGn07lD6I18kwO08uMpGU7FxXYfWPnvhYpJKpXZUPoUo/HEwbrRvLKGzYnxWXPkOx5Xf1npDBOaSBt/aHlnZDPwtMbtjBFd6qADpXpE7Tq0UUMHfbmyso6cvjMDIWXyk7EfJrnkE0opZ9v4PrhexMIoQpxqW7WwdZkpzTW8Ps3Ekcr9uUjShU4+OPoo/1BV1txp8rcq1ZOxepwHLIv8svPvkNBSGEhKpi/NuDxLHW8KXJ/7sT1jdIOH5BS41W0sri5ZWYHshMsVgd3ogcfvTYpWzNumI2cAWkny9wK0/npok2FKZJwFqKTYLiQIWDtkQWu2V0KAnX32z7aN7j0xCJN+MZF/l7gbggKvKzHgC9pIOKJltykEMuuO8jFbQrkXGdeSyQFzXERJ0+E54TpVrwdl7OFEQfmJFPiV5+m30PK26lsxC+Ixtsgh7NcXyRprnKtyDOQPkXbV+HQ/oT6/5qcd01ns/jUhZIDX3Y5IuD98HbPcvqhTZulQWmqC+OQpRyoemNDXQqgjKtmGM0tOISu8/3mHywI//4P9/H/f////2f8AAAACmkNyI",
    "match": "eNpdzrFr1FAcAOBfciGENMQQr2l4Da9pCzo4FfoGMdCpk0stukQ7FaEg3UTCWWi7ZBOEcgHhOpyi7dAx4JCiIB2K4BLhuVicXUx+xhBCCE9nv7/gG8j2UNEA1i5pcKB/DwUACCCyAKYIyEwB3BKAtqAg95QoPeV2T3HYB6B0AVG7gA+7AJ0uBLUNidaG3GlDdNsItCYiehNxt4mQNAnodUKMOuGkTtCrUzCqlJhVGjtVOnWrNCNVyr0qRVrlYGJOLMxjF/MpwTzzMOcUc/SxBKsoiV2UMSnKqVeUGS1K7hclLhWwoQrK1D7J3BqeaAJiXcDUEAHTupDpbcSMJmFmnTKrypmNJRsWNLN6SZZABhiYEvxnYf0ju3c4un7nxevJj8UL2fowuTWzJem/44emdLRpLa8+v1Zn/vLV7oo3Muz9wdX2DfdiZ15lk5e7xurtB5/fL85/eff024g7iq+vfzq7O/YWZp2dX/H+I2Pp68+35qvx8cqzvaPHc/f3/HHSvDn4c3J6fvNfB/4Cg/utBg==",
}
V3_IMAGES = {"raster": lambda: _tiled(24, 40), "match": lambda: _flat_art(20, 18, 4)}


@pytest.mark.parametrize("kind", sorted(V3_PAYLOADS))
def test_version_3_payloads_still_decode(kind: str) -> None:
    import base64
    import zlib

    payload = zlib.decompress(base64.b64decode(V3_PAYLOADS[kind]))
    assert payload[0] == 3
    np.testing.assert_array_equal(lossless.decode(payload), V3_IMAGES[kind]())


@pytest.mark.parametrize("kind", sorted(V2_PAYLOADS))
def test_version_2_payloads_still_decode(kind: str) -> None:
    import base64
    import zlib

    payload = zlib.decompress(base64.b64decode(V2_PAYLOADS[kind]))
    assert payload[0] == 2
    np.testing.assert_array_equal(lossless.decode(payload), V2_IMAGES[kind]())
    assert lossless.encode(V2_IMAGES[kind]())[0] == lossless.VERSION


# Version 4 payloads made by the encoder before the speed work (commit 8b9de3c): the decoder reads
# them, and the encoder (whose adaptive models now work out their chunk probabilities in bulk)
# still writes exactly these streams (in their version 5 form).
V4_PAYLOADS = {
    "predictive": "eNpFkl1IU3EYxs/7/5/zPx+uiWWpK6wsQ8SPKGIRflyEy4tCiqQgRNMSIi0opDDC1WyKIsmYjmKG6Vq61HS60jk/U7EmBU6bLimpqZA27WAiXmhHu+j5vc/Fe/HCy8NDgyDDHEUBBSB5IwgcyI1hDf8HorfUzFKwKuFD/6CkIxu24fz8GEnXKDCRSpwmbg4FTnqEmBnnlovBBmD3E3FCgkoFS0IRTEoUSkwB5Ni2No9EDboPavQMidCLhsGCtMiEYBq5IK8OJ1mYTniPHNKLbdxDEp87gU6Anq/mSuVrvD2gkZkJgCHOwq2wXlkNtPCd6I8c7MIyrg2e3VG3r0sBelLM9SAjmP07+BIZrDIibWS+obFAV1Aj1iFokxm4ctREnKwaGlg9gkFSRQbwPF6gTf4TUMjnwBpTj9TcnBCpJRugw6UhXh4cZJr3ol+4G5SboTFlUClFlpYNcSIScRM7hbuJiW5BoJojyb3yVnpdgBvl27TcO/QAnuDvNPgYRSlSvsLROlIBYMQi91EYZV7QWbGThAIz+wjeMI/RrnaIOPOVjNJHqZ521zFFQ0q8Yb4+fcUVGuOOCM+VZxQEpd0biOy81KWoOrJ0+Xa55m22oSDvs+HD6dfO8cXQjbPpqTO7qZJPq6abRYnPLxQvCi9vWcO3t7uVXP/e4Yt+I3HNHqpvzHOg6vd8bICs314fNrjsC1nQZGqtdXcaOnzo+Lr3FLu0p7liYacuyW5V8Z7Q1h996uTsgeuJqV8y0cmnZW20+8qIsrpsaHb/1XN5Qwc7zLWBWWE/Gc358bv+GZrDCaBw6JNpS0pU1KFgqUF/AftD8Ig=",
    "match": "eNpjYRQSYeFgYGBmBOErjMxbGRcwMgsGMPOaMDACIQhASAaGDkbGA0wICJbgAYJpjGBmA0cDB1j5EvYl7BAdC5gZNYAAxGxhWsIEEWRUUwNRQowaZxiDgr4xfmOcxbSXBWjABBYIZGRwUnJhYHByYtzDtIeJQYrhFwsQTWVilPCSmMLEYGCQdJBpCTNjExC2gWEdEIFNviR8iPMsRyfzQc53zIyv2CdxzBXcIviT/Qv7dgXGdUzvmOYzrmBuZTzDOJP9PzPjPY47HPNYZ7O95njHzuiTsJixifMxm8815gTGJ6xPmduYr7G3Mc9mnM58ifkjG+M9pibG24z3WNczfWN6zbyKsZ2FjXEHq7zFDFaLFayWwmCPsbAw9XDe40jN+cG0mpVxmvAtHoYGAYapwgw3eVhYGFiYJnBdYD3OuI9xL+MExqsCLGAA0qcgXR+w1cnd0lBWf37x5vnlPj+ZN7zW3spVc+E5r+l7ex7zxTl8QvzurFFPc3lzmY4YeHe3nra7Lad1c+Lc3+q7TH83tln/jjD5+stumt3vzzPLJkoUf14uy/riyfG0l08Sn13S0gn4LVp0KyT50Gmhrpn1bZGyTL4Tqi4efBny4+olLlCUAQDdk5WK",
    "palette": "eNpjYZIQYOZgYGB7mvSTbcHULLX13V5P95xd/3GlIyMjUJyZh4kBBeglPbeK37ryy+kzvvVrvuuzaR2rneQ8SefcJKm6bMarFYy2DhVbhVgUXqfYPzpucvzP8v/7tx6oF7a63vT4veiGL8aJ6/q4S04zLjLzVxAPjb4uftal7rZv0IcEE8Y/7KdP7Zix/HvGrbpzS8L/Z7Utz708ccJ5XyOj9mkTa449WSKvbvVQW/P+GY+QNsVVVzZ5bsv4WNls/Pcp81n/Taum18/UCzm3J9nb5toniet8X4JjrQv/thjIsfd45B7rEYlmZAAA/5Bmtg==",
    "raster_carry": "eNoBGgHl/gQDMB4DCAAAA/r6+gAAAB48yAECABABAAFAsy4Z75caVrL41BL5flut9TJdTCXe/wpBIksJjLlABOOq0ody7vhmE2Wj6FyULGQKQXOOw4X8RAD6bPaoB6zPUhr6LCQUcfOAmdKG7nUkI/PqUTvEZZTou97p3iMNrvkPMu+MIqWwlpkTwS3A+HZ6mhOcfCvzZXCzqNnPE7qn8bVIl8frXrAQOPwat4iGUo+vv/o4ZFEFWmzzYhRNRr/ctOQQPxM0tpx/KylD0RHMXwmwNeMNHUn4bKO0qHEk6OwsnjvJkiLCxMIXnPZTKT73b62U4kg/Pz3OaYOndk0hovb4FgCu4wEONLlPC7Xv5w2zrcEJ0aveC8/UDfIjDgAAAGqHhGU=",
    "raster_explicit": "eNoBNQHK/gQDMB4DCAAAA/r6+gAAAB48yAACSL/oRyp9UX1YUTdMgiYIihuL8yK2hGVJeq6h598e0UhlBIHMDMauFvttvatCns7Hf7iUAVd81T9Xs+kDfteEFtOqI5g6HBy0frhy4OGLWKFm1rlTzo37NW8yeKIpoSy4acqRowilJUyUJXbo+tFQ/yd6nfH0LGD0N9s8pHmIzzZRfmQDIBrn3ze3EGgRxrZna/meeK6xSfZW5dX36lecgQjZu9T2tvZJh6hYuH9Ql6GbxrsiVu2G23B4vXeTw3pH6bepPR6vVUIOUV6OQGT7x+Y0NypfrknGj4JX9PSKTafK0Iuk5knB/n4s7/e3LC38BARd/HXNAG/Amgby2yFZ8eVkYPaCg4sPOO2/GL2FCBzwdgcK81BuDt0kd+Qg/rQBAOs/mbY=",
}


def _v4_encoders() -> dict:
    from udic.lossless import transforms

    tiled = _tiled(16, 24)
    return {
        "predictive": (_smooth(12, 10, 3), lambda px: lossless._encode_predictive(px, 8, 0, 1, 1, False, [])),
        "match": (_flat_art(20, 18, 4), lambda px: lossless._encode_predictive(px, 8, 0, 1, 3, True, [])),
        "palette": (tiled, lambda px: lossless._encode_palette(px, 8, 0, 1, transforms.find_palette(px, 4096), True,
                                                               [(8, 0)])),
        "raster_carry": (_glyphs(30, 48), lambda px: _raster_payload(px, [(0, 8), (1, 0)], 1, None, PLAIN)),
        "raster_explicit": (_glyphs(30, 48), lambda px: _raster_payload(px, [], 2, None, PLAIN)),
    }


OLD_RATES_VERSION = 10  # what the encoder writes at versions 3 … 10's rates: the last of them


def _at_old_rates(encoder, pixels: np.ndarray) -> bytes:
    """``encoder(pixels)`` with the adaptive models at versions 3 … 10's rates and effort 1's
    long-match parse as it was (tests run one at a time: the parse is patched globally): how the
    current encoder reproduces an older payload's stream (version 11 changed only the rates, and
    at the old rates the encoder writes version 10)."""
    from udic.lossless import adaptive

    kept = longcopy.SEARCH[1]
    longcopy.SEARCH[1] = OLD_SEARCH
    try:
        with adaptive.using(adaptive.RATES_V3):
            return encoder(pixels)
    finally:
        longcopy.SEARCH[1] = kept


def _as_current(payload: bytes) -> bytes:
    """A version 4 payload as the current version writes it: the version byte, and in the palette
    modes a raw palette coding byte after the palette size (and in mode 3 plain literals after lz)."""
    from udic.lossless.payload import Reader

    reader = Reader(payload)
    header = lossless._read_header(reader, None)
    lossless._read_bands(reader, header)
    if header["mode"] not in (lossless.MODE_PALETTE, lossless.MODE_RASTER):
        return bytes([OLD_RATES_VERSION]) + payload[1:]
    size = reader.varint()
    at_palette = reader.pos
    reader.raw(size * header["channels"], "palette")
    lossless._read_match(reader, header["height"], header["width"])
    at_lz = reader.pos + 1
    out = bytes([OLD_RATES_VERSION]) + payload[1:at_palette] + bytes([lossless.PALETTE_RAW]) + payload[at_palette:at_lz]
    if header["mode"] == lossless.MODE_RASTER:
        out += bytes([0, raster.CONTEXTS_PLAIN, 0])  # plain literals; (7) plain symbol contexts; (9) no long matches
    return out + payload[at_lz:]


@pytest.mark.parametrize("kind", sorted(V4_PAYLOADS))
def test_version_4_payloads_decode_and_are_reproduced(kind: str) -> None:
    """Version 4 payloads still decode, and the current version writes the same streams where no
    sample plane is coded (small palettes stay raw, few literals stay plain; the sample planes'
    contexts split by texture class from version 8 on, so predictive streams differ)."""
    import base64
    import zlib

    payload = zlib.decompress(base64.b64decode(V4_PAYLOADS[kind]))
    pixels, encoder = _v4_encoders()[kind]
    assert payload[0] == 4
    np.testing.assert_array_equal(lossless.decode(payload), pixels)
    if lossless.describe(payload)["mode"] == "predictive":
        assert _at_old_rates(encoder, pixels) != _as_current(payload)
    else:
        assert _at_old_rates(encoder, pixels) == _as_current(payload)


# Version 5 payloads (palette raster without fresh literals), made by the version 5 encoder (commit
# 1a3f57d): they decode, and version 6 writes the same streams when asked for the same literal coding.
V5_PAYLOADS = {
    "raster_cache": "eNpjZbbRYOZgYHBnnMDIyujOCGIzMDAyMjIwNnMzbuT6z874gw0BGXcwI+A1ZsY/TAjYx9TByADWvYa7nxWGGSCAcQlTGzMMX2B+AVHJwC6g97zPwJn1s//R9UnbgtSiHW8xXNHXfPA3fBtIBeNLxt9N3+TVZi5k2FDRnmCpVhVx2X7H4rKlps2Tsv+9Z5g6bfMjphv5v0w1TTMtdasufV6zmy/lY8rRZoPblva71qVabpqZbGj18ZFX1cF6d88veg7Hs9P+/3/+XtJxWrF3TedGV8cnK2cuWWoJFJvrYnjGiM1RZMcRUZnEH/tO5583e7BO2eGc348rcWFB/zmbjvAKM/rF6Er+flPJ08nuGvFf6eXaBxPSF5TtzFeV9J6WsEtRwXidXsPyOi93tt9fBY2Otmee3ttSy/HZ7dEaJ6FrJfFBxxa/P8A60zM5P+b7Mpf9medtGauT6u1XhX3QeMptaXX2yfXTgjc2FM6cyDhjuulLzqD4lqNcK60zGY6p/vr7//CBRgmVltMJfHdv8Hcf2pJinKCQtFkw6QTrxz+vS7bvzzLojBeYZsF+7Paa0z/ZTjG0X6q97rnTdq5QC1+oQm/oVLO+CSwZYgV/zBZ9d7609vmf/zY7mqbuYM8QWP19ZlaK6J4jfV9llQ7n//lvoZx7adX3PV6ZVWetWbK9hQJ/tB5a2B75L3XmtST3vuYvk0xXvXpT8PObnlNW2REtrX83P1ocnJr264XS9nSboEWTazfuXZkXsPvX/1Ml9dkt0a4vmT0ePplzK8UoVCkz68esbxoXHl7s3Biy2Tip5euKNwu/J25wn9sa+a1I8uC+dqk7SW+qQt5u0+SU3/5v6e+9sWt3/59hd2NB5nuNSVP0Azi//Poq7Kf19jPHL9Xs8oPZUQ5Tcr7/n9pr57BryoyuC5kGS7+0HN+hLvjtv9ovN81pykubDlerh0jZv85JPmC9dLfSyb/HGoyYVuwUlZj5edLpszoRDm8MdxmltQtvfb1ec9+Pw3Mfeh1cqHKhXElohefLP46FJy8tyb/8x/xL5+K6lt5j6iKifFWqrubPTfkCF7gUrmuL/mBj0K7tMPfcsr/HBQ72Kx77snHm750Hp24T8/3Xtvre6VqDiF6DxGb3N4pH9ixV4N6e5Mmou2BmsbP2k/+TzaZEuiXkca686/vvVbTWIXUlg2/cTF/DRYMZZHTFmsQe6JrdsrLt3M+y98z/jVN6j7e1lT5fcu/odK7MptmFc7LT5KWFT2ely7w0e9Kz0+FScsyfyKkSHGWlDC7nHfiPvDA78inC/uHmowZpy1elp1n0KF8zZvx/IpfpWeY/q3mmE/+mcLB6CDS/9kuetdp+U+nU5PDade4rMlPOKfhdS5hgW/xwtc7l3qUSq6/KMM57b/BdJL/x56K2z5/b+bq+qcXevLl907H3/56kCP4Oqbr/SVbxc2mAYoUgAIYeCEc=",
    "raster_coded_plain": "eNpjZVaQYOZgYAhg3MTIyhjACGIzMDAyMjIwTuZm3MrVz8H4ig0BGXcwI+A1ZsY/TAjYx9TByAAFjC+YjjDB8CqWaUxAoUnMs5hgeBXTNKha/tksVteqS169Wfrq3cQJJR+mceW8fbzt2PtvCf5vtX+5uqk6NHx0u6C5QiJhGgvLwelKc38mrmn42HLHmwWifzbjz///Q6J0f3z8d/HB07Nv9+/I3T/7lb/nU+dP//8nRKf+/3j01D//V4m/sp8LPXvyj/tMl5Z7UnBmlaLqu///99Z8+90xSeD9J13h81w3Iz5Y7sk/vOXO//9LH677VzHB9+veF53PhXtf79qitC1wucEDpoNX//8vF9B7wZi9/LSY6sQNmd4epp6Nrw7PPvn/v1ng/P+qm5/80t0779Pm5CcPdYylNyTPXK+p8t7jNF/0zL9Hwqb/PFKx/2FCltLuqJw1c27cbOjWn/P/f+aPjP+BfN1/6/jOv5Bf3X52a4fFPlWd55s21f7/f8eN6UO0kMqpeY/fLnK4f0om5e4iWS+3//+nfUv9F3/0xPPt6zb1R8xmq2JvmJj6V/j//82vjD8celJyv+5HUu/Vy9Yyje1/bxnt+/d/1SHtv+If/17NWpY6vcvt6KOCikmRJ+P+/Z81ffnfx5s/vdWfeXLv8vL09vtczZ2BdiZ2a9J/PuGfbLhKi1Hsecrbpzu3h335J7Lyz/++HX/+n9a+/evHAds7hRfmFCZKRhZf8dH+wj95+gu++s+rUhdI5Rol7Ggr9Nvbxtv18//yp9kfXi6fsFW1lj9E+qvEjARegV9mp/L/sEh3vTWUvbWy6BCTj3E6z+UpkbPy7lS1/i3QXrKncklmN6NnAY+KgaAVw7pn/1dV3jsa4CnfVq329Ic0y5y47ZNZvpdcOPN/Cuf/e5z2Vf1R068+yUudJqrn7tjjc1zk69WFfa+a7+3fkaUUVrx89Q6TDi0Wq36jNT9a1eLP7wqYsEE/rKPqtPCBEPNDpzSyV0mdfPmnWTcwnC+VJeRKdIfWBYeE1hq9yVYhEiuN5djcv3y9K8xiccPm8vt7QXJLN7MCAHJImaA=",
    "raster_carry": "eNoBHAHj/gUDMB4DCAAAAwD6+voAAAAePMgBAgAQAQABAECzLhnvlxpWsvjUEvl+W631Ml1MJd7/CkEiSwmMuUAE46rSh3Lu+GYTZaPoXJQsZApBc47DhfxEAPps9qgHrM9SGvosJBRx84CZ0obudSQj8+pRO8RllOi73uneIw2u+Q8y74wipbCWmRPBLcD4dnqaE5x8K/NlcLOo2c8TuqfxtUiXx+tesBA4/Bq3iIZSj6+/+jhkUQVabPNiFE1Gv9y05BA/EzS2nH8rKUPREcxfCbA14w0dSfhso7SocSTo7CyeO8mSIsLEwhec9lMpPvdvrZTiSD8/Pc5pg6d2TSGi9vgWAK7jAQ40uU8Lte/nDbOtwQnRq94Lz9QN8iMOAAAAcJCEZg==",
}


def _v5_encoders() -> dict:
    return {
        "raster_cache": (_banded(40, 60), lambda px: _raster_payload(px, [], 0, 1, PLAIN)),
        "raster_coded_plain": (_banded(24, 32, 4, 1), lambda px: _raster_payload(px, [], 0, 0, PLAIN)),
        "raster_carry": (_glyphs(30, 48), lambda px: _raster_payload(px, [(0, 8), (1, 0)], 1, None, PLAIN)),
    }


def _raster_as_current(payload: bytes) -> bytes:
    """A version 5 or 6 palette raster payload as the current version writes it with plain symbol
    contexts: the version bytes differ (the outer one and that of a coded palette's nested
    payload), version 7 adds the contexts byte after the literal coding byte, and version 9 the number
    of long matches (0) after it."""
    from udic.lossless.payload import Reader

    reader = Reader(payload)
    header = lossless._read_header(reader, None)
    lossless._read_bands(reader, header)
    size = reader.varint()
    out = bytearray(payload)
    out[0] = OLD_RATES_VERSION
    if payload[reader.pos] == lossless.PALETTE_CODED:
        nested = Reader(payload[reader.pos + 1:])
        nested.varint()
        out[reader.pos + 1 + nested.pos] = OLD_RATES_VERSION
    lossless._read_palette(reader, header, size)
    lossless._read_match(reader, header["height"], header["width"])
    reader.u8()  # lz
    reader.u8()  # literal coding
    return bytes(out[:reader.pos]) + bytes([raster.CONTEXTS_PLAIN, 0]) + bytes(out[reader.pos:])


# Version 6 payloads (palette raster with fresh literals, before row contexts), made by the version 6
# encoder (commit 51c371d): they decode, and version 7 writes the same streams with plain contexts.
V6_PAYLOADS = {
    "raster_cache_fresh": "eNoB3wQg+wYDPCgDCAAARwApPFooPFoqPVosPlstPlsuP1wvP1wxQF0yQV0zQV00Ql41Ql42Q143Q184RF85RF86RWA7RWA8RmA9RmE/R2FASGJCSWJDSWNFSmNESmNGS2QwQFw+R2FBSGJHS2QrPVtITGRJTGVKTWVMTmZLTWVNTmZOT2ZPT2dRUGdQUGdSUWhTUWhUUmhVUmlWU2lXU2lZVGpYVGpaVWpbVWtcVmtdVmteV2xfV2xgWGxhWG1iWW1jWW1kWm5lWm5mW25nW29oXG9pXG9qXXBrXXBsXnBtXnFuX3EBAQEAAQP+AQgu3W+fUSb7M5a75FemjtJ95fShd3kC0AT5WZ7boHDSTStur/t3+MCjvT+qR4Vi5PrvFJjM2RZrlzhJJ/B0TaAaUFwOUvCJzkzftnDpzbVd2fy2hv9hNXwam5smOTXbhiDHe4HDpzVhK2DG4EENoOrEN3+CfFxXiJ7OnVQGb26irmCcOMeeCThJrRwuMiPolL1bnYEF48/m/DdA9B6LzyQUMXvHncq8MMjzhEew+MAtspUTUFS+xZzLW7ETpwJDsBtGB2/+pHBS2hJVq2DiRoxVq+gAAB56WmExkELWc9cj+l9ltqFhXmc4uE0y9wweYhvRb/BYSM7XbVZiVar5jFOCk6bdOQLXwVxgD6ELIZQYGXxjdaxxra7O6EqSyE3hGXYs9zTwkp/UqWhHhe7YfdM7fPSawc9jGEZHCbrjroq2Bwl+82WpeLv6jdXTCrHbzZEi3wmsfAL5P/KO3bGuainKVLdHkZYo7LNbDbzIgr+b5RE2OH9yUrDSxPen46DVUeTB7ESiXmGzbvKtQOwdR6IYn7amxBrHM1vvqPke2c77KIfG1kBiWWHVXIviTlVDy6J5UHVVdPpMvM70jaMcKGxL04XoYSEeNxmDrXnouPnOzL9Tca22Z+BvAOwnSdtEOckRPTV5Y832vKWJSII9rHnrGy6+bnG3pQgxF/VlCZIOe/SRQuyITEam1zEtwX2m3uFeiMAPFnY2+DNMs4dm72w/80SFWxt7aLfyhcuMaP39ItSeVuKMALTJpydX2tefLwBuTc35+yqfsBN3MhO9nsB5yqxV8HwWa87JaeYw21kljJ3D0Au/1J2qT0dSs279yKvsAdc81sQEr6/yYNdvHV3F5gBQ2aA4XzbD3Q73Wy5zermlrK1l/T4eTbjp0DCBOOpGD/fnMGjjyK1E5pQrmBeHvaClD37CU/7kakgT9ncbObj/BzBXpBJ73xSG3rprBoUYBFQZ60KxoxYX+oCc6oRTesDoHl5O/mjuoyY1H4WfJMLmw3QU+pvh4UpiFJuWt3Ajupsu1VT6mwzXJMAptaKwQkafpnWIHs5KopE2DDBpcctbwHj9bbhtX4lm/Ez0i8cU+XYfLErLOZ4Jz5fUlpseLTBZlM+ezrBr/ANk25SdosPbOP5VX7MwYIstWQTs+L1xuPC1501LDjBtoz8S/RpaTpRgx2fU08YJh17I9Kmtd8xDJxapRdyJUwBSuOXgPV1XKX+JyXMG3iSEOGC128ACXoxKJHpIyb0Crzfg8Q02szKfIauJgUktdKcJGXd0og4V6di07IerrEf+ynAg97O0ZfiuoTL/QdjnFKV5Eu8oDWIX2W6+/VvHJPdEAN7uW1QP/z7cBrPxbYZTSg==",
    "raster_explicit_fresh": "eNoBNwHI/gYDMB4DCAAAAwD6+voePMgAAAAAAgJIv+hHKn1RfVhRN0yCJgiKG4vzIraEZUl6JSmbvbKcKEDuW7w9g2hvHwxXshx+d5Ucd4AMj1Hmn9AqFnNDnmJcb0K0JtXq97/Spy/OJskxpjLqfxTuskw7fL/7RRffw8M8qC2KX4A1gwrPyuVdAM3nRdQk7pABOse2gGHkN+oeGzHbYW08YEXbp3MDk8j0RbutDF3MSj9/2879XPeYue/FZVVv1grhogxgTYG3sSUWi/Q5jp0qeQ3cWJk7bVCKMCPtVRVy/es+l/n0Kt6L+PDQE00tVbThwupstVn0gw9t1zuI/aO4IAWZyU2BxaqByvua+Tv8s9tIyCD9VPIRMzfy0mzvHM5U3gO18uMALKLlFt+dfxTgBYILzbIn6IqXSxEAbaaVuw==",
}


def _v6_encoders() -> dict:
    return {
        "raster_cache_fresh": (_banded(40, 60), lambda px: _raster_payload(px, [(1, 0)], 1, 3, PLAIN)),
        "raster_explicit_fresh": (_glyphs(30, 48), lambda px: _raster_payload(px, [], 2, 2, PLAIN)),
    }


OLD_RASTER_PAYLOADS = {5: (V5_PAYLOADS, _v5_encoders), 6: (V6_PAYLOADS, _v6_encoders)}


@pytest.mark.parametrize("version, kind", [(v, k) for v, (table, _) in OLD_RASTER_PAYLOADS.items()
                                           for k in sorted(table)])
def test_version_5_and_6_payloads_decode_and_are_reproduced(version: int, kind: str) -> None:
    import base64
    import zlib

    table, encoders = OLD_RASTER_PAYLOADS[version]
    payload = zlib.decompress(base64.b64decode(table[kind]))
    pixels, encoder = encoders()[kind]
    assert payload[0] == version
    np.testing.assert_array_equal(lossless.decode(payload), pixels)
    assert not lossless.describe(payload).get("row_contexts")
    current, expected = _at_old_rates(encoder, pixels), _raster_as_current(payload)
    if lossless.describe(payload)["palette_coded"] or lossless.describe(current)["palette_in_context"]:
        # From version 8 a coded palette's own sample planes split their contexts by texture
        # class, and from version 10 a palette may be coded in context: the palette's bytes
        # differ, the raster stream after it does not.
        assert _after_palette(current) == _after_palette(expected)
        np.testing.assert_array_equal(lossless.decode(encoder(pixels)), pixels)
    else:
        assert current == expected


def _after_palette(payload: bytes) -> bytes:
    """A palette mode payload's bytes after its palette (skipped, not decoded)."""
    from udic.lossless.payload import Reader

    reader = Reader(payload)
    header = lossless._read_header(reader, None)
    lossless._read_bands(reader, header)
    size = reader.varint()  # palette size
    if reader.u8() == lossless.PALETTE_RAW:
        reader.raw(size * header["channels"], "palette")
    else:
        reader.raw(reader.varint(), "coded palette")
    return payload[reader.pos:]


# Version 7 payloads (before texture classes), made by the version 7 encoder (commit a9dc5b9), for
# every kind that codes sample planes: they decode exactly (near-lossless: within its bound).
V7_PAYLOADS = {
    "predictive": "eNpFkwc81d//x+/5fO5EJKsUqavkZpNKVORmZKeIxJcyrtGyKuoSosyM7BHZXXske2Vv17WJrOyV7ec7/o//+/l4PR7n8Xi/z/u8z+O8DgYInENiEQgYgWI7zHwYxc3KzI7iYmQ6jDrGxsyOAPv78N+aiIQRCGD+T8CgFP5/WHIgQPonQClUClH+A0yhplA/wb8YgPQDlv+DjQ3konJRVPAvIBvKhkIPqPwPICTkClxByH/wgja4DQ6CgqC6/1C5AM6dI5HcwL8AN2QmqguZjfxbgIqKhZMxE+Bv9SFBAzwDuYFq5N8iQ30AfKarg2LRpfDfAlaF0P9NBb5BwWAIGoJmD+AH2DywB+1BywdIfIJBL/QdLEKL0OoB/wycDQpBNkgFkaAFAA84BB4CrpArpDYCrNQPVhsHyY8gFowAj4PeohzAG/Y/KPGEvCEtGngA3rPvsFUqlrkDH5NZJzAI5WJ/nw9iTxDrZ6qjB6VoN/ohbD3jHzoqYyrdGgwW4T76P0xBeoUsg/eAWvphXAPdixQ6UA6vMgp/xvhBu+gmJCjHNOCeziNJPugtbAgA6+jCQ14wjc4HrOHAFrYDvQfXob6gVDZAGBpMwF3wALISjOEiQQKmGNmFBbMYT6QHigr/QQpSgd0MuhsJvJEtR9yY3qFdmHIhF9QIgMjYOixeSMQMFOIicZqP4wFDKhYaxwWhbyF1GWfhRQDe01FwSmngzQUwjm1CfUHXosvhMAii4IZQnUhXOBbZCjwgEI31xBrqhYM0UMgYjwLeuFj0LhwKF8HbAFygov2xExikUQ0cDx+4aBlJxlEYJqFW5CA8ijwPaBDrEGqL7heIBzSwC8JwcRCoxeZi83G1uG1kP7If9R0JErB1GJ2bNgqgFFOOsS4H6+AreEcP/LHVmLcH74I8sXhQB2VjyZhXVuHgDNgBuWi/g12rUBkELSNLMQsgG5UMx8FqYAIdjfwGKuE2iCcIEwEDCmYLTjpwRjoSDyZACHoKRUGHgZeWXjBIRtNQnph8dAo8ClbAd4jn4Phx5DoyFl0ADUOCSyAUioIQUC6aipZ6Ug3QYAQzg6Y3VeRMAdA6KgT78pAtq+NT6DOmCc1BPrjdmQOnFSLDoVU49+CfQInIDcjWDaZCIRDrga/TQQegwBuQP8zTDsAAMhO26oOKoHUAKkEynAw1IQ/yB10ugA6kL7wF+cI6ViOAcB+qhRLAONQAa20Ab8gfyIQBxBZa6/279c4i8YCOGCu5VNOfR22mm9rKzDu2tL/wp7i+3tzaHrWv0CT0SdI+az5cSJmPHFN5cNQnVMAd6fNMHWaexSVyL+SQdk9t67+nexgTTJLfKY6y1c5CNE9P1BFtCGkELhX6mWjUHEtNQ1i3zbPXi6HEfq6HZ1wUHkiR211T2LcWE0yYpWMbN/LTFFhOvMh2leDHKr0OuOUnlKoXbRpdREW/lZ8YfIG7bSh/Ch1hIP+NXlVvK2WeB8lzvIyk6axvG2i80xVvfki2NyvNgTuTZ2Bt3ZVZLKnOqVM+ToDbMsNjnuHiaY6zmDtaUs+eumk1iuszSJoMH2p/5SUk/ujyee2PfSvNZ1LG1Uqeqb4S9XE8VxMD4T3sDJvQ+CvzpeMu1u7KG3UxF+dvVphjpEcu+UU04apyGTIOZXcLr2Pj6CpG5lZ9Zuh7aof8Jd4uxmPuUjofHrfyOf4hfTDBnF0ivevxWcOdKT/YdTXBJa44rojknM5+QcPaRnyt78c6r6/JwNBClmHOXp9PrXp+HgSqtL1mif7mdcq+KWIDvqx0f3Yn+OuNbGQJrTzPtI45SYhpqWyF7AX7chkoFisU4PFWTNQKUt7xcPJ1NEc5J78729FJ+ahjF06c32swrTqPisNnulFKVtBnhViHIVXRheSbULhXf8nVmTz1MUi/IZJ0hHXchjLcmBSVwskkXUxNZJvMMOLST66xl1YvbkRT4oRLVgU4h8NUo1zSm285c4S5RmtH5WpJqxCLODylcM9HBJlurOkx2PNje9HmZiM+gwE135hqj/izfOFciguNq3iieqge8YFJx/H47XxCwsBQL24jpzWlQedBXKzVm8OzUdrL7JO92WMckZdWyrXi+EFO00oncfq7gcbW8Nu+uUk6CiHl6iM2GzGL0pBDr1teFHD+9GK+zYvAn9l46XD4LiGwVNhAtlpqzdqePtiUElk2L3V2lu74A/uE1MRngtaTK19PraZ86LTe2m7WqPp0IofDKDfO7tJ8Jz5S7soPtN3HOjx+4SnVifxKPFtVp/nkZHdDmnOiwg3/5BZnhnQBpTG/m220Hjd266awKU9ujbT2lIsGJFsWgGeRStTadK+ljzO9dyubSTk9eF0imr6z4lFgS4NSw6ok4S+37puKV6oZhXjZ13tDLJ6rpNpc/yhwjbSZ0HlJWH3t++DDnreKQ20ztezaRsUMcfv7JSbPvW4N66ily9gaKO56Rso9FvwVzVaQKWTwM/It0Xg8pMPy2vDP67sa7e46czCv9Ns7uIYnQrL3xcaZipPLCWMFPy753oYopRL0wWYfEeYXREnHHWXiEiGS52V54ZJtnScURlMDsflwnIjF3gq5QJ9deckNbxhhlSAqLWxAvv2X2Pb+1kKaXOira4zYbhYTPnK3iQl1a7p3zzB5eNQxSM5EhxStuG7A0SZsqOZhV04YbXyB4kKUZnCTp3n4uH7iaaxhCcAiSUvK5hirDDIRR8zk+zquLbCsP859U0U+V8Lq96sH1xj7Op36Od4GofO1OgvIPYHutx/fnqgq/j2eranTp3J3cr5HgDeXpJb0y8joyhZB9Xuh67x4jnzFogqjvf5G0vTDU6zWQe8CQsKOPtSuV+wZK5RQ7OFoMc4/lMD+l3EuU2bZbLddltz+fmZsIfMQaw1mOpqtgsqYs+n5Rc0LESN4ZyPCYVWTifXk3mD5Us+pEoKOA0ZMdVjlaeJ6b61qbKF+biinaGb/ud5E5UfNDXnaXMYTIyWVcTtxtMDGPTmN9t6XpgSFpx+rRdY91i6mcdGkNVM6SmvCMXqNunPB8QLyHpQa46yV58KfmN75xQj+9fhqV28t0e3C76D7pCHlfk0Jc6bRpsiybv0jrAGEzjlc+GiSjJToEJfVXc1+3rpJRHFTxq4DRqDQ54nKg5hNHbn9V1iaz82xQ7LZh+nzarmUxS0MeXRVTsfskI0sqj663ZJbZVuxbY7nSJLb6vWgLONvu+U1+VmkMqcZarikKlS6P8uMFR9TNagi9r8cDWbxKZo597GWcY4+d5nB/s1rNumRAUYjeVpUsYLnjUxhuzmfGKn31dNSw/RdpV+xK9vd+LDjky+msx5QmYeeKwmxL5QbB75nu5Em9cy1+LYih+0xETefZ0Sy859m5lX//M4F9SeOUd9brrrvMP0q7rjXUez3JOgz5koXJ+/I7Ca39sYWu1zmh1GCe5bBRD8V19PFeVscO6fqmZJqwjQS7Ed0fcj/w7JvZu7CPibh/JDWRqM5M/f9y24jfwT1PyhL012TSzzfdn85aeTR7EJ1xrezX8ZpJAUNxjOXeWD7VjVOis+ZnBuvi5RILshlmpz75objfsdOl/tGive8rcnc2IzOQ0YXJ688rtEWneHDRwj8mV82SMdfHj6HYhm4wl1glSR+Q/AXg5KoVIfRRUR6Dnyxiu7zL0Y54mQBcQGWtIu09y+xFoyTvt7yMaRX3/bz3mQAB+cLzZcJbd6htLKIpnUvM7Gpwpy4wF813PUseoFE4k+oHF1IFAvb5iOKFzKun9zPMFJiIOZXvjhS2G02XXTF8k71HyczT21M7uXiQJjLub6r76tcMKqtXhdCtgwxP42mlh9qzZPUdMZEBEgvJ+fKnLPFjNv3R1r3zJ0YSyyRGp04Ur5d0cinYrfq2pnes38F+qSbHXGtMK09yaX8m5FjJ/NNie9R4SSpI+Xno8a5srS5BzH7FXx8Z7Kc6fW8aoXAnMPxyEcmR/ksTBbcRG6xftU9Ir05nSh5xzop+/W2SzMa2xxbYHqNCR8PrRxtqtqt89NdXNGNy97FJE7qV38d6LpLYayyk0Tve73dLNup8KMiXd8zl36dMloRdyQrGFFlKMdeh2T4X7zkb/nOIdRXTL+c0VaDGS2l+8IeRduoo+43KmTp2m0cjUdy9/zqvGz+aEDZmJmVF9EfdXcygKrdw5ZP4Au8einZ3aNZJx//kcDqIn8/8WhfR+/7CidVbf6sxniBbzuc5i/f2FUO+3gH6IvHvro+m6JT9UXhJsN805uzTPU5CsbO1Ed82Z+gMRlZJ4TBmNGRuoBrD+1bRVdjfkiH3b48m/nIu/l9+9hXxWDByaLa7zELrFJTNoRjjsd1XKUamq8uSxM8d3W4Hou2Ngyo9tZgCD3P3jz8YSGyjyZCWwJJnx8/qiby+mD6lZNptyrQ7oBAYLm/qKW78MNQzVDO+W6UR9+nNF7OVnF3enpGhS1lupt5HAVdFQJUuyW/nnf5lVFlBf6v4naMn0aFqvjmvrKjnVOnUzn8eIPwQiiNek3udOqTOksGT5IFj7qCtVWOeXb3+aKL2g1fDzPacOvH8RuKQTOI7OZ4UYOj681ZJT9VCpYlLIfMoH6zm9ySCpgqqWj9iWOjd45ZoDQbP5etLwaR7cW1LFunrOcurrT95v7yynEB30sbv8rZ/6UblUsaEjKwvdaW5J9s/q2yj42WDfxqMLfEybUSdutGXKohVx9xRn4q1mExuU1Noxfapzpycoow2ZqerKxCSbZnexdu8l6OzBuRkobwIspz4pO9m4vNMhoJcR2+7Jpt8wRNt2W79VmEgFano+bSsi+3LC77iX7PIEYvN2LqxqKBAOene2ptDFEzYoznHe766JTBzi9nicjkal/8hTtpzzX9+iZ3usUM7xjZxGKIz/PH4kuLLWGM9NQZiobclIT0Flnb6opFygMZLvSJ9dT7a89rDNby5MtOnD7eeyIVVhhJsXL1drJ7p4E62kgfsintRfcY79Cm9OP6hzINkyshteR22ZMlBSeZN6ZEKjWyJGfR2zONUPotO8p6DjWC1zDFeSzzZse86ZE5XOpgaCKTeoCs69L3w9rXfZ8Kz1DqnUK2v/GxJdsPgeUCG76Os4Zvok2Wlo1PPz69KkLsbz+HTZdozXheSWxCy7798yDUQb/7lFwGvvvEc0ydBBdT2UI8f1LupJpsWX5ErqPMUNnEV6cIzfHFcDJXy+hRo3lvDFteq8/skwpv9fgTD7TLql1WwiWxHY1ydKeMr9fT+MlfSuxUcX+lNnqYKxk5jLMqZCxCitoBCDXqOw/dHMzk3LuGqw+mJqJeUZY7772wEJU/YuPq7cLlE1xjVCfHQ1d6z/hji1mUMG/DobHqyl7ZjHGponr85TEGQeZtTeWHHTjq8Pn3XdB2xP08tmI90nRn3UbDQr3Iko9VcMxe4E+HsoWy2jNP3zjwqBLpjzVJZxhXeKdWBjXLySe3i1zV011wtvXsee8Xe/ZTYaN+Plnzy+5wRevawvZjWwX9p2K/L1W7SuiZvXY+F4unki+xHjWdaFCsPvtbK9yf77GwgpLTydqETNGTjxAZI1d958pvZGj8gNOmn8sbFLtvWhVZpFF0i8zqZZ0nXV9+bkz2xa/kJZ/jdBDmKrU0pDjYRE/eKRywRBMRAu+itJc2Je0tuJ6pLA3Qv+RvmFrJufS55N3kN6Krd9bHMeH9KqLATqMYcZOuXXFz5dvvZvVI8fFfrLIzt8SUnPIzDUaWO2bSlu49nQYrhrs6eqjBsQDi1z63la20n0tbWJMg7KKlw4rMAOesmWbj82e6fjNrQSpLWyeuT5io009XaZNH3hDU+2Mu6nbRXuh0tZO4lh0Derls/IMazYiyK/cjb61wnl1rV6D9HscJiRpXxMus3U2rpy0K1Lbyuj7p6iG4tbrMLf36Dgc2I1eTfpiLXBxaaUa0L08p1TC43KtO3RsO9BEsuSHZmoU/g9DaFLNbyLnqTu0fpK3rR/1eOA3bt+tVDTkgmol6tq3hofh0khMW8T9E1VuC",
    "near": "eNpF0VtMkwcUB/DvnPNdeuGiacEuy8ApTmIiRIlMjDXKNsiMMl29xuvmImqMvriXbUKd9aOwjpGKtWoRU8yEUEuBYkQQFD8ZLTVG5FKpqGEMViTaGddEhDJIlnB+5//4z3k4Aqg1JGOQGNJoKOkjSoxnYFpkikBiZ4GfZkkIJnbWz1SKzMyAE53oBS84/pcRB90kKSawCmYCdcKrGCOcp5k4WYiAlXfQd9NrgmKEK3ADRVZkvehFeMRq27l2zkIWusxDHfnQRS7qxV5MEWZOjclahBRFKdwD8MkM8iRhp46FQb5IXgF++KEB0s3AoIE3xbSSHesVYaFXBcXyMvVpuV2pV4Sjw0oPgeKIW+FkJ9FCL+AuADrBGt0hFGItVOOqQQLZIb08zF2EdcrYvaMsA92Cgf/SCEMwPxLHgJ93g4cmuJsUAnim7JA95Fd2sdVo4MCIdjzFTij98jI+QlugRWGiMF/CN3Kn6fhvAJWCOXZIZuUCtLxJGeSesFA03QhxdsGOnZSTPUgtiFbhLbe4Hcy4ggFJcAhf5FiwAL4FLKZhtg5HIQQiop3XCwtNaIPEIoBhdMMovkEJbrHMeriINmymCdIYQML06cc8gxdkw6VWstHecRZs9AYW/I1F4EA/+mF9JWzp0ckfiKnly0d6GvM2m+Jd8d2HHn9TOzm8rKbeaky7/qfL3Jgf6/16szshvzV49L3UMx6zaknFj79G9y5SezJOtaluPfGv2f1hTniBfXWuSqMvpXDHSZdvzH+tYdPJpPHJ/rka9f6AbLVX3PfZ66uGlnXJqVUDf3TWpG9UnecTVtYtLTS/06uZrk+aEt3znq7pb95T4c7bWF9zJypqbebUCtXZ5s9HDs7PaNP9tL2yIEpfa/AErNWi1pctDjjSAiX2ucHygfvS1oJj966lJc/pvN3W16AOHTuwJ37EcMB99kbm09cX/hI+NX2lq3rwse6DxudZ+VrxbVl9ZNnDHV3RynMvd4u/x+WeG/SNnTiRsF/bF2o6fGmqb47F+94TlZAMv+QZS1Ivb0DdUMq71n/6W4Pbtn3fn+ftCRRmH829GpQy/23YNao9cz1ruPw2vyhrE8P8BxIUUEM=",
    "match": "eNpNjgtMU3cUxv/n/u9tu4K54LQRWKUwFMQJAR0LDIo6kUaoGxkDocorE2SZLnOZjmUwaAfI4jpoEUGBIfJohMzCWHlICohGA4wBFpA3RTagVp5hlvFa69zj+52TnJPvy8lhgoMTyUIIAUIUhHK7gILj1gagLAnrQArMt/0OyAT6O2LSNQLBLeI/XhhvGIUKjU4yK5mF/okbGAaGadRjyH6Jac0lxzF0GZn9HwguGTHZHnC8E9xrTNUJP2MErYxWRiNuxBvUBgVo2ni/GIrhKhOGQUnpQAd6hp7BGQUYsx2z1XA13Hl6nn7xAnxjU8rpcFaSI6/DQ8ih0UkkSsGgIDQWWtAQaVBAdkMWASjbshbUsLUC4JrfBKwcbYIfqOYdkEv14VzqDsGfJgoYEFnBvkoazEaJGrNOoo+AdTHUYXUqbFgPs1K58BgUOGQWe40TalyMQQINoIf3sMT4YAP0EKDEZCqUMIaxFIsBFVL3MOThu2Qp0QPN7BU8CpUUIjGJiXWmkiVm51OujdDOxhgTOmIYNphqnIn5t4nwvC0Ym4Iketn/CpFZ8HV7YVUVUxtBB+hXhGO+fPap4GCbOvuB73beOagKGLRdLJ+LzXeY1LpLcHPc3tMJ0dt5LkuW5ZaJeZyM7bmcxI7rHGbMZzUeG6dcz9hbeOV5Y5vwIkeLdHOeWRbrNfrdZY7Z2rdLZoObQzhuh/aV+w5WTHoyWFH85vvO8emCK92jVgfZ2/rEvNbp6ZCp6Fvmh9erE1s2qwGtVksc16r7ww799iyeFXVO+iTt4tKjHytDD+x6vvWGO/3qWpg4TfuFyLqNr53wz+A6uhFI+ChINvXgWUJ0Qtwe89W57q7Pnc4HdAyz5FuGdJ4pLnt8e+nuYl3Jr97IeVBVnh52aCZnxHVv9gGZ54BfUfLgpdLd2TdON8rFvDZ5bUGb3EHeKw9drJLz6tXyc8I5WTw1IGux18sUZ2NLZMovS449lHxVVN8e7IM+mEtei/DN5Df5CKT9PguMTp804WOfgbfs/PlrZwXgFi6oYQcK0IMzgkU6VrDfIkZQmSQUzPjGCTq+nz9pHeHh8ssyLb1MTLe3Ri7vnzjcD7Wyy34xF5xVBQqOyvBTyfULknz7j3nPP/pw95OI81WFap3oZr0mKaz2opvTiRSvo9lNmYGr0jLRUBxHPLnLLnG5722t3xFV7sSRK60jUzORQ5/ezZsgG3I8FpJU/rEdLrPuGSLboKinA2Wpc+OiCo9e/oLBoIni/2HluW8Z7VP1faIY77Fz/PNeyzsFlUX07TrpfaedTz032Q2ptiduKkbWj4nLlFATohVmBtl5/wUAm5cs",
    "offsets": "eNpNl3dQFEu0xqdnNpHTIgKSowhykSAgCyhZgoJEFQERJEdFQV1yziAgoCRBkCSScw6rZEGCRBMIEhSQJOHtrfuq3ptfnTqnu7/+putU/zGDBcr/IDgIAgDQW0AYM8l/RC9hEuEn9m4tAPMb9nH1SQQQqEDAD8p8GHT/P8AA6v/oPAmBbXgbngD/AXh4PsL/UQTAezLV/0sRvIyATjIDZD7A/wHayYSTwZMfLRAIB8J7ZF78Lx1wFADNnE3cGzT+2H8DlJzaxy7jh1D/RokK+IrNoC7FzaP/jTKGFBiEwWPwM6QUXgaFAFQCSFzwPezCC2qo9dpoqzEHoBRbid5Cg3XwGtSDZngPKYDnsd0IoMlHB8LRcCLSgVkDh2AVgC50CxgBavCJYRQfCSb3wI/CexMbRbGPmoVBFaYJiQPhmCpsNsigAgksXbT74l0sJUIDjEdULzHgO9immkVqsSsUP+nAIPoAuwhI6GJ4AbPKBkpxK+AbINfBmHLGWBjk4fbptuh20SS4CreKrKPBHk0zLgdVgSH8xMWjrbc5QQz2D81v1BhYoP7K/YyqgzaBa5UW/EJz0ueDGNQWCuTDpfAa9tQhMgnXA0Abg4uFRXeQQHie6jUAjdhCJA0djqWcwAB8P2AUqATz5BaBl5huNDYJjgY5yDIqBIYnMP8UUqiWgmpy/61BLNILEmHDQsSpCDgmAvgFIKE+giykHJ6Gx5EXSAZWCZTDMSjNZYSENgXCdEKjcDssXgnAGuwHEkApWAbiZZjboJt8pCDUGvmK+MGA6ZSe2Bmdx2Aa1rK1PyKfYxR9HeSASjgMlUvelIyQQBoAp01vMhGd7R+mIOAaN1bXvQPI3WnHOEPky3oEMuAy5AisIRkwULgmoKB5jQSAsJSFcDiQ6sRykTUruAlYpjYdkYn8ByXzrRuW6bRHZAJDEJlcL0SmbBKREbkKy1irIzKxu6nnrPw8fskMzT6/tGnNJmLm5x5oXn5+3uJzkmsvETEfJyLhY0RkbZCI+LQQkYCPRCSunYgIdBKR1iEistpERMbfk9e7iAhjKxGJJ49pO8i5kYhg+4lIWQ0RiagjIo7kGk32ax0lIvbviIjC+H9aQRLZl6wVqCciJmTt0b/vImtSyWMc2VOB7BnRQERedxOROXLtQc+mYW9AJUHJzE1dTIEXVVYKTsyKfBPT/Mv99W3OCp5nGI/nULS6TCM2LgDtBgyN9K/ksQrcwQcnagcJBU3gr66n32K72aFL0GTmfPvTq05sp7j3HU/VJG/6e8MTfuHuY6GfKwOMGCKdexeO9eN6+bmLTeVeqMor9F6DQ30GhfZc34qYp1TIhqVJyvKKIJ9e7MhnJ0jZU1AxvadcQNl/6XuOPA41SjxxUjwdYIO0Zc+99qduq6daoNHx61CMC792Oa2MNdBdcq3a8MKeuoPryWcUHSwXlMOUXnguCc1mZLbNTWsZrm2ZjZ7E6Mltpnhe5PkeV6jn8+FX+9nZhY2L7G6e2uvJqg2dyp8EmR5zHWrcI5FgfZ7sQiUjdtpL+KyrAoUUb67CnTDHm+GAECpT+utZc5VX3T1H2Xy8h/sdrYoNW+Y/DOz65PAP1tn80Ts4qmSlbH+kS+zy+Ivam0N/R1THStluVs+c+ms/9NdiZIz79McJo7jrVX28jK1JnSHhdBweDdn/rIkLsShLHbDydDmon8Xut3pPCgNcBn1m1DZaXxzk6EjbaD86+cf+WJkWsxZyj+eN6YgydxYp8lXOqSG/1Scx6oNj4cm5etxX6Tpn1ky6l6fdOFmiiKu6AcjzaibddL8/+PXAe3YYUZ6HbW5ddMO4W3tmVPf1nZPtoWyNuqBnJkp/dq3ssrbjhsaG6Ro66Nminif5lOJKFee2dAzGxC/8HLlc7Bnpyob6burdI2lWqlS/GW8oqnj4YPQ4cepomZl0PkvMsmaK0HJoNdHsQuf4QZc23mClmzB1dBzXB9FTXuI1uTPzmrmwN2jxjef73oqZytq0d0YytDn7PYxFayHrgmplj34QEsyak6qzfcomhjvkJAN92tdXk9Qih557zr2819FjodJS96xto6H2HYdFxB29P9o53tVWIBo5+JXv5dgefvfm2GDyxkysXWgE5ZlcGt0bb1KH7vxQRbtKKNtxNZe9un118LK/0xMqxsrQNbbSnx36VWpFzJswawi3ZKl29XjHPLrvEcezDzu5z+CYXwVizRLYzzK01t6UXg9WebE8BCj+KZ7GkvF+bpCK5YxomqB60M8ah1nHXf/xZaGRpHB5vTyc+EMoWiG5jb9OWY2FVDChnr15m0ZFtj5Uc6KB6LXBXLYvdf7nlQvefk0+PJ1Dp44ZhZ1lc/3dBs87zDVYrUD0cbQkMw/CL1+i2oM5HI6JCkSfnnRavX+xojUoOKysQDVoc8uZ437z935hgfyjr93aShr7rNv9sWoz2N0SpuFT+LR+mV1btfr0vkZbjnJMffmxV6vM349owx/0/OdT8rwiXzjcPdmx2i8oq2fylWOFKZjFKKTZsudtojbafGHG04OhxGjsJYSTOpz5voLlKZD0M66ZbThSXTxJkp1azNLMiPmtnXv3QKR2LSWBvX6e1sPJK5EyKC8wGa+0x/OPfeho34MIQW3GhIl+XtcGY5GoGvvcZLeN18EmSvJI2l/jvKF1SwupndtWIufFik7kNkwqvy6JD55aGm51XKU+W6rpH3KdTeGci5SbaX2bBJqzaj/nYWlXtIv0xO3HC8oP2wLD2TVtrxZ/j3M0f/Rh3+e06u9gm4algT42zxaD8oXTArQ6bo/aBpXZ2mebD5WVEIfaOweDNW+8K8ROntKSD0rY3404nCnYpjWR3FONKsugvJnZcnysdFEYAmp/hndI02csOaZ6M0sHB41UGlzPJ9T30Ukc1i75zCSP222+mPy00+G2sOYsO9hBUr06aOcu3Ol93yXUSpvv6DQb3lIuN92fEdcaxL1pmd/ogSKG8ah4FHROSUhvsVxSOfz61XzsenbM5LeKOctukQD1nCDNdnNjDws/IyLvnSG19qnxW98u7PpbPIg8gddTterxEc3IkKbWULTcJzz0OqDruE9wpPxC4xBwRJOA/oxjV+sLzTKzF8WHo+dx/I9QCSdsLRW4CWLKLiFeWPanrOfSCy5pIS/HTNWyRByfZY1o8sIMTgse/Nin/bBArnLWhIpttc1vjjbjYy1AjfJmLAgwHy95UFb3yvveTAQzP7byps0Ip1BcFWsD0qVYO60Uyjz0y6GV6VCae7ON4ayrnUf+0te1S6LD9KHNc7sntkf/nPUzWUaChk4MGOkLmW7LrKTLTMatbp2xvczkHCtQ8uUVnTBGklughzXRgQlvM32fzZfZRaQ0zocjnpdDxcX1WORKLduox/zOSns75d07D9+iGmfcOHuGIxhuOOQ1Yl7uTfGqL+oIxt4w/Mqse/twTfLh47N1rJ4Dzb0PbTpp8Q5N+k3+OLH2l7d7hq43lRumBhXVf/kw+cKHsnnBnx1g08ZXWhUc3B+gEUHCtdKKenmun35L7wpFPMO/S/wj/L3fe5nEh8ortFj54a8nyD/ujuilxx3v1XlCrrnAITM1NBvoG6yhxXPEXc9l5RxrJvOFe9U5pc0enkgrpgM7X5IpKpSEXA4Jr3ylszM+byoNp5blP46Qa8vUh4yQa2+duNXY5Ea0hi23TLxq5zf8PnB+iO70CsY3tnxUpT+FjK1XmvkEf4aNoD7vOF2/oA4h08bz8iWR9/F1JcvHM7SsT6jnrdjtHxa1Gj+qtm+hYVlxqN/SSt6Jdhnta3ekFXOLN+KK2JqwZFwyOLn1ts7Tsjsih99R8GtplhxFQL115s5T+31SGZ5z51QoOwuD6VTnaFIipWdXmeRXtSh9xaRzTk4E2oMBG7MQYozMXuKQYzmXLA1bq2ric/88NSWF5CYmdb2MO83oXHVwbD1e5EkDQaWiEKRDD0E9RhAUrARBMech6Bk3BMkZQNCQOjnTQhCHJAT5kteNmCHomyFZrwNBjwgQxCQIQYLkPwJ3cvbQhKAmKQiiUCP76EGQnQkEnXKEoPumEBRESd5D/tDKkSP7a5Dn+SCIUheCasnzsVgIsrgHivkgR4L49BXFpwnWokzDSK1WqwJPm2qlt0PmYlVWVEdZJxqJO3F7if4jdeIXZ3suxyHc1iUdMYoZRldv557kgf2SJruB1YvXxQtmhDI7zScun5cLDTykWEwPEZI3FzqIGi86RdWA+FYGb39K2DzRVRVXuPRR0++J9bkHJeo8kdrTymeptnzxV9NMPnR0+Fln9p9EQa/08xxH5fRWa9EcoQb7gYlv4mKkPbyUxicCCYG+2MlKQkqxhDIzBdXj5kN0KF6uGaVeulLg9dGaNIZ2l6B/FNf13EruD9MvWXGTd1qpJRHFJ4i1bkES9Na5F9JMOqX77Z532syvlHDunpH+a27iSEGpvnYrFS9fH2NXcIOmkB8nfNQ46dT6V2hoj0qsPqBPSS3igG/DfmJ1tjDkfmTIyBlfMzg1irXs7osWbO/XGzcmf+VzoAjdBJe/qbUzDTHLDqHU8/dIkBvh8+ks5riu/CXJ+UvTSRjZBJ2ja8SdA0bNnweM4zf3PtE/FWV4cGgALGo2XcOuVbOgp3K+BSkTOERUwv5Y0xm00dlrRM+GmgYYRU7rx+alPFLUJnxa89szHPn2TPWQGJzzpJq3+YBhdGqyp5ROMPWc8U6JscOmWtOC6s/ZK3oJl23cf6kUdx77ztda3268lavv7yHUZhBqm0JgOe9zY6tpd95zupAnhN1eCSrzTFf9YYnXMeKzySSI4FWrSd0UY/y8vizUefsVgp+1OKkVpSSltWJpZG9UXWDc/f0OHWRl2ouy1mugHTBcZRSoatKIMHuVSWhuO0IGV0cSOWhlCVY2c3/3WIzTt658YOsZfn95jcs4WCbF17YxRJXOqHvgBqR4+cLs7BXDRkN5hjGazGdaOS9T48dR6xyLx/7alfz7KLSOZdTHR+qXvu9QrH+RM2ErXybRfne8BCfhqwfH0s693k0JCIs/t+rMzayhzqI8zN4XLYeZ2Rhf9w6S61FknUm+9TvJ/3Giqyhl9+vRM10LZpvFEwei40L4Y3Yn1Yr0G3ESgWbutl7O/oOKZzpKrnAthd17KKb+6uJuXf98apirlv1yns8hDXPKZWNaVvwtfSMO15ZX7e/UZUMLSH+VzmxTCbAMcMgYdwhsS+shDIq257/Ndfi4Nj5/ffqoEfF34oxgTM2NMfCoyG2MejhKfdrRfdgbB6sZUT/dIRpbjfBI7Dr0EW8p3kFa757RMHhuME7rrHCZSvE+KKdKfLXleP+mFT+34rvmd0vag4kL8ZZ2VW7RgRJH6vAag/yGNjsXI3cjFFi6Pdu11XQ7YCQ79EyCEumH86jSzfhfQ5NhDY6YmImfur4FfmXfFVJ7spBF+o+eX9g5/zTLJQfJaCzMFGxYHklBX9oFEdWkWg5ddQae0vy768IJl8ZedsdTRnkOyKd3nmRCZenyTAj+NlVoOjRoLcl8nC68WUVq8dOjT71oJWrCl8tx98C87qnmWy6N7WTNPa1gKa/oJJvZC1z2AjhZIaV45+Jmd+GQyou3b5152bNZ+fnBbgSQDEpxhWPiteblV9ePf6hEcm+TUhUW8g+lb8k05uzraMTs22usuMoZsDJd8aUYLn+f7TginC8+zBWWZRAHj3wV1JsTnfpl0fiZxPWFjXI/jlb80pMif1RhLIkUzI+hSmxV+ic8oucinT7jk9DxsnUuNR5/0zaLz5e57nHpsLeU9i3EkNg2izhM7G78oI7TNIuJ3p93ZdsR+82D/m3+pK7kqenyhoWzlj98Y6W33xmm4aX2EaqBr6M+sSU8epfnoJqULThtPZY+gexxuTwemQyVuGobdRgfO+V228h3XyKYlcWqaiyWpaP7PcjVsyNsOvtprIkuRenqi0hprgQVU6MYiF+C+csTafofJlrgqKrMMQGCJ6/63XR7t1cnxWdSdCP8qGm6XC5K2mvU0du1fv7a+7A/xrZH80I65m/j2h05y97b9mSFnzp6OXebHYhn+H4C4qLzuCOOFIeE8uMS3ert04dRMk6tVIBF1LWhNbHECd+pJMrH+2S1QjOVx+uJ2InqxS9JbNkbo/yfCc/u8a3/9Hkk+8Zf/scSg4OG8t34qVqDJYy0n4VsqaSQ4j2ehckm8VO0shjKsE819Q2LZkwT0Cer3HNygfE4TKbq3HEb9N3b68d4DbRk74iOlbKYsLgTPZ1+V6EXX3lacOa08VuKViuOu+nOXsoel/+UMr6R+euTJVSzIKKoIk+4KveYjiWs4It5E5dW8YWNMU0pJgeHknn8iY7dQcvCT/yKKfmjfMr7YrjzFUKGdCZJ6/nbAemRO2VmnUF8oq7eWJfu6YNgjyLNnv0Rrulof0p6wddS/v6qhtZUD9Y1bSqJ3nHbRSvaMnqb5h+Xi4YvX5NYbt/V/WH+vWH5rI7kZHi8mrn6Q7pvC3T3lYmvH1/iUNngEFu6unncc1ftSEbn6f7dgE/XhkYWB5Q2/STiznZrBAwl3pDes/OB3qc189wa4jWt5ll+UkD3u8Sl669CbNSx0nrttuiT/Art7Fzdgb1I7nic9qsBNYMHifZ/DDHs8uaLhWzXuaZa9kmL64ddXyyOBDQMD1NzN4MWVcSOvbUxizJRmtrZP2jtoGweA4rzbybWrnHq+FkWQfxOm/NZ3e/yqX8aOuZl/iKOvlVZtzXmcfFBymSRtw3WvBTddo6jQFcyysXJnMEsQwY1mW8AxVd1c/DV26zewkqxnyaZrggdB6gc3rlzszfIPyc39SdgzhAtDtmQYar5yz4ldPRGbDzI6oHCwSyJY//tPOch6XrTGQth6R+3NpCF7Bq7+bhnokW4RFPoyJK5i1BDAUH/A3rGWqE=",
    "coded_palette": "eNpjZ1aQYOZgYAhg3MTIzhjACGIzMDAyMjIwTuZm3MrVz8H4ig0BGXcwI+A1ZsY/TAjYx9TByAAFjC+YjjDB8CqWaUxAoUnMs5hgeBXTNKha/tksVteqS169Wfrq3cQJJR+mceW8fbzt2PtvCf5vtX+5uqk6NHx0u6C5QiJhGgvLwelKc38mrmn42HLHmwVq02zGn///h0Tp/vj47+KDp2ff7t+Ru3/2q+qNNsn2D9Iex6T+/33s1L//dSq/TylqPj+dx352WVJsgNjpkvqL7/7/rwz49vun3M0P73LlLqhPZ15V6nCTy+nO//9x99f9k5P8//WMI9dzbt1zewrfTp95VEtryoLL//87BBW8Mvr3/HJ62ZnNU/LPGcuf/nja4eT//0vZl/233PTk15mZ3z/GMb6/OSEybM3rH9q9gWtuhFSeF/w3YeOBH0UdfI8yrqdtcF6/2Che/UX5/Zn//89ImPXf2jrwz3n+tXczu++fTXmbxHDK+fw5q5M7/16qZ/ywODDhnFq+0Hzt20uKXUq71aoc///nXK75L/J25/OCZ7JTTJN7j8gKnr5Uzvb/f6/gqg+zG4vub82/lKn1ZDv70cuVgd7b//1/d1T/75/dO87JmibPWmZX2qKWJRT+OOHf//a3Af9e5i1+6+h+a09wx/X0a1ErFLLLs5yd/YWfnzqwcKVlyoPkIJZM8c1xi09+XvTn/+O1f/5bW+3+ufdu7cOKDRIFNxecOmErcePvaom7V/9YFm7c42RTeuKrpjR37PRXsm0//++beejRd4+Zq58XuEYL+bdIxr4NeH9s09f/65a7XfEoyJz/1eSp52I+mU0z7Nz6GX8I/45Laj+0/YFytdgqJft35j1mfxKf/b+W8n3dXO8ljdGl8WWxlW/dz2YrLro/4cz/z82t9yf2tFe5bf+9OS04UOlZx7lJD0M3/l0vevsVpwzjNnt38aJHScI2O4REnIKM7u+Z6/3yyoektZtWsrdVbU0/HPuF7baOV0PGxBOp50RvztWYqrLPMKaXtcjJ0zdeXz5WT1JEaCPrE5N3/66pOXx/tLji5qYPi0yYAAZhndw=",
    "alpha_12bit": "eNpF0nk81NsbB/A532XGTNYiQlmy5qqJKOJakhEVFbcUslYUIRJXmhpLyJIoWwiZMCRkT7ZmhrKLiWIsWbIvWSL95t7u6/X7vM/zzznndf54noMDIoIIN8AADJwCDcNwFxwGwwwoFsDxEAXGgCQ58B3awGIADfk/wP1vmiGA/psmSAmkIP8HkjnI0G+gheMe129MCPDwBILfFNcAaONogn4DxVAxVAJKQPV/AB+flBTMiSLYsYOHB+LEQAlkQVnQCBgBFf8BLLiBEAiXgn8KRCID8CfsCPRPzaFAQAgvi5dVvAjo4AE2EDHjLODKhOgIHQmEA2HOZiU2m5BNiIaj4c8EcJ4gJoaiZPAJAsFoCpQGp8EsiAWBb9ACqIOqoCUQCU+BDU6/UIBshyX5YU0MqIaCISY0Aw2BcegxtMo5pGF5o7aOgsIt8UiyJliBF7aEcm0gbdufbX2IpiIgBn8PPwM6cZnYZgDm4Y1dH8AU4Q02VAC8wHVDRUgWyMTlw20EEMq3Kt4OP0bmAaEHToLAinAp32t8tApL4CcKlrnvY8OwWSAbtwjGwTwEhnAv0PtoMzjoVwfFwwsAJKNCbDwTXUc3wQ0mQgFFEOjEZoMZ/ALXH2SQwjuBB3PYMi7TYE7nqRAgI6N401slaB+csw3qxZfAq+AeaETnkCW4HgYfcE04UdUpcBEDernqkHbsZ2QJGQQpACzDdK4fkNwILOOmBbaT4eNLhCAoGAY0XCxuFK0mhECl6Cz8CgaJ6CoyinZxFUGdkDwVmoIhNo4Mdi7BmWgUNACGkGhkDsKAB7gp3E6VeOg5AMHYHDQTFACuOs5tsIzOgYMp2BfgG/iGVQLpWBbO+TOn7Z0AfINZaApY5UxCGrTBLUgYtMn5KEuAiYIaWLYGLQTqJWgJqsiZ4V/8adhvMB0COcgoUoDdhMeAnvYpUADfAx1oMgwZW80AYagK7kXYQPAb2ATpoJjzyBnIcz8LSsTq0uGbLWAJxmC4zZL1ykLpxM1cYh7MbcJ44SCxLBNI+BJL2jzFOhj6Ue14nNqd+cydFL7WhkOt/K/XHRciNARIvhryNo2LgV3PdzjruJ/WSOrjva4zGL7HT7+t3piRd7OSSuLKjk315c+d4+7984y0LskuO77LVJifZ0Csr+Mr/WM8FkLKGy+zt3gZ5TNDzYvIAqved/ZupLSLJIuH53rf1q3ZVZlr27Tkn8GHptoNSQT1tu8lhfinBu16r9LuJB11S+JHk8pr1utmhE0Xei7tqJG6hbXjoKoX8ZAG36yFXaeg+MzfEroix0imW2+/Ndra24xn690YkX8kt/X5JjLvLmpZ5I/GDrxcOStkXefKv/hFQYzlNKmQPpFu5FacwCOdLFGW6hDEsJfPDahvMO+riHpFoGp9iiEpFZyoM3QvfRlYFvxk8LSw8MnxiSBmA9PkMbzf2zjg8KiKRnLAH/0Hup2TXLW85lMdn88qvtYmIFAh2OLr47BALS+LR9iHFXnu0ilOAkKJi2DDo+UPx+s/U45E7ytH5XgUDlH29yBf4oUyM58wXIS39fELpFd4Duu4k07FsxlGXS0XJy3tpDI2+u+cNLwQ5ldD7xxWaTx4ppWyg2arGMatiS2z4dlOuxvqTJSqlF4xm+5/QKNefdZsJWNAsbLI+n4yXIt8jnLKmPlAQzGjNfWulsU0sqwc/mosOJh2ws7/WMJaUt/lN4qOaTzJu3n9ojxib8QJq5hJLIMJt6RHO7jLky6kmVYEb7ehZA9iPt7eMDR6d7F2sXErl8U1ftfUV39a75OLY+c+u+t/Vpv34fXktKIzXIsfmtIr47e3PHyzKHpiLnMab/XhXZVb9vzVh0sL1QleFPtKmQnaeUV3wonx/lV1L3e8r39W3vVS1/drCz57qkovWyXE37Q6ndyYeaWsQULAa/RsguCER8+1P706LAkNpNQS07gfAV27CZLttXUdzu9TDBZfXm2iCCa2KroUTBC7ew1kaLTofZMKgje+JhzYPaHtUBV1RSjeYTTZd5bA8rQp/6F6sD9fYrUk7kC1k23CzQy2+6bl97RZ46P8YwW1Jmt9TLez0Yp9vuSgmtYbrBW/zx1U8YgCagK3PVXEuiA6I5G5vKfk9SEDk5T4whK8sr7TMf1VBZa6192jRw/nUPNiTbS1i0I/+tQnTm5o523OVEu8IZ21tpnIq3jnlDx2LtsKG/LWbQ/Bczj4KFi/9svcJnzBm2Z/X6OnqtsTnnguuE/eCy5fbhuxGlJqDc+hdu9UK55wmDOwNJRFGti/PsMp1Wp+18iqD83FWggCXN/a9PlHM+/qh6ABFZkhUnnB16alxqMGUs1L8pgnNJ+K9Hdb2XrF1uifWq2+02FB3qluGFbBfMyejlpKjGnMzJut8rc+q4zJrPxB+eyrTwbTUiOmknK8OmZPCO6F5o440XzPiNquChjZ1tZVIbPtXFcAkUpqE00juq9Gvmq/wKek5x24tkF0mdq05sOu2nYFPqhXX+ebWtAUpJwe17LT5ZkM7d0y9D6mvpJwy7eytzZShbCcbVV/aH3atXGH/4vYDjULI6K055f4d/u+3NH6Vddc7GMhLpGSfe5LQOGtuGmt09JResX9/Lv5JolC9VdHG98PxhD3mLqv7bNoKeMpP7cef+lX+9OfoQZPr2ofExzrIEYUoop3nKsFFEhKXOfzXTC0wfYC25TDbyWjBULqV7V7FwX330TaZlJ8FSzfJEn6tkQJV1jKiN1x+Ginl8taKXJR3ltO4p/zyDIs0w/OuJr/UcfaJNLjSA4xNRody9mrLHTS6J4xbq+rXXzk8AMEKpD5q8CFoFmn0pu7KjoEN8ioY58o02cjUdWcoksWskYFMTqS3moqeUZCfya169CbDEz1C4LGg6fnLvBb1DKqxfCuc6L2KhEELYJh4SMzoaeh99lnRAV4B9efvFD53m16MXhRZNFeZFTwJk0gtaeVdt729F9mYU35RMloYf3MqeQ0duCjUxvE3daf7mNqL9GMjvIy3Gk6MVSZcmoi+pjf4FIJ+9OC/LSSnPK5dKF31w+JvpnBoDYOJrPpEeQEfKBXwIKaeq9zyC3rMsddRv4++A+k1PqBXS7rPlcIPaXH7fjMjy+GvvYRMrg1TNZzLiq28la33FzdOU8U1peQPnkggsBQEu8UFUR4bylvvOyRX0v1ef72DArZIemKqbYmurq8MzvpUTVjfXoeR83kMcgRgTyn2uTKK8N+ASyX64pav5halPf2lXjVcaqtpigmP+7zWi/lwkBIjtrJ/dHWXY/fqocVdj8xtpmPKKuI9LjvaKmfSD5Ow1CaX56XWN1reGDcK3xXhurK9R+aIj+/GjQPnt1cKQi6fI0al8toKfcVYf/cN2n/6UPI2DN/p5pJjReqbJrL940VG9k5Zs/fjOLRiY2auUeS+PEMfyu3Ws0ze/qcg5LO06OU9w7n+IvX1j85UWl4Tb5S9CulvtTnQ/V2elrIXVNLy5dIVlyHpUJIsyY/4+VQ2HtM3y/mvDe5BTri907EKZMB/axjeGR6MjbFWiWSSoXUZOv6uQdktS1Pe//E0g4/llqMcbnN/Su62CHJf6RXkT2CMzb3qH81OmfTXzQlN0wSZ/19uXXXJ5sVkpvzMgPHpqxd0EyXYyj84IHb1lV6ZGsjuTszZKoOHYmp2wJzlV8K17XDYDD/A0B84QM=",
}
V7_IMAGES = {
    "predictive": lambda: np.concatenate([_smooth(40, 44, 3), _smooth(40, 44, 1, seed=3)], axis=2),
    "near": lambda: _smooth(24, 20, 3),
    "match": lambda: _flat_art(40, 36, 4),
    "offsets": lambda: _tile_sheet(48, 64),
    "coded_palette": lambda: _banded(24, 32, 4, 1),
    "alpha_12bit": lambda: _smooth(20, 24, 4, 12, seed=2),
}


@pytest.mark.parametrize("kind", sorted(V7_PAYLOADS))
def test_version_7_payloads_still_decode(kind: str) -> None:
    import base64
    import zlib

    payload = zlib.decompress(base64.b64decode(V7_PAYLOADS[kind]))
    assert payload[0] == 7
    pixels = V7_IMAGES[kind]()
    decoded = lossless.decode(payload)
    assert decoded.dtype == pixels.dtype and decoded.shape == pixels.shape
    bound = lossless.describe(payload)["max_error"]
    assert np.abs(decoded.astype(np.int64) - pixels).max() <= bound
    if bound == 0:
        np.testing.assert_array_equal(decoded, pixels)
    assert lossless.encode(pixels, 12 if kind == "alpha_12bit" else 8, bound)[0] == lossless.VERSION == 13


def test_texture_classes_by_hand() -> None:
    """Spec §5.3 "Texture": 3·min(equal, 2) + sign(Σ sign(d − pred)) + 1 over the direction neighbours."""
    from udic.lossless.predict import texture_context

    pred = np.array([5, 5, 5, 5, 5], np.int32)
    w = np.array([5, 5, 3, 7, 5], np.int32)
    e = np.array([5, 4, 3, 9, 6], np.int32)
    far = np.full(5, 100, np.int32)  # not a direction neighbour in H or V0: ignored
    np.testing.assert_array_equal(texture_context(0, [w, e, far, far, far, far], pred), [7, 3, 0, 2, 5])
    np.testing.assert_array_equal(texture_context(1, [w, e, far, far, far, far], pred), [7, 3, 0, 2, 5])
    # V1 has four direction neighbours: equal counts cap at 2, the balance is over all four.
    n, s = np.array([5, 5, 9, 1, 4], np.int32), np.array([5, 1, 9, 1, 4], np.int32)
    np.testing.assert_array_equal(texture_context(2, [w, e, n, s, far, far, far, far], pred), [7, 6, 1, 1, 3])
    np.testing.assert_array_equal(texture_context(3, [], pred), [1, 1, 1, 1, 1])  # DC: no neighbours


@pytest.mark.parametrize("groups, bins, alphabet, classes", [(1, 1, 5, None), (1, 1, 700, None), (3, 12, 9, None),
                                                            (7, 30, 40, 6), (1, 2000, 12, 8),
                                                            (2, 1000, 10, None)])
@pytest.mark.parametrize("row_per_symbol", [0, 4096, 1 << 40])
def test_adaptive_models_bulk_encoder_matches_the_chunked_decoder(monkeypatch, groups, bins, alphabet, classes,
                                                                   row_per_symbol) -> None:
    """The encoder works out all chunk probabilities at once (in blocks); the decoder chunk by chunk,
    per bin or (small chunks, ``ROW_PER_SYMBOL``) per symbol: all must see the same numbers, for
    one-context, dense, class-blended and sparse models."""
    from udic.lossless import adaptive
    from udic.lossless.coding import Decoder, OpList

    monkeypatch.setattr(adaptive, "BULK_ELEMENTS", 3000)  # many blocks
    monkeypatch.setattr(adaptive, "SINGLE_BULK_ELEMENTS", 3000)
    monkeypatch.setattr(adaptive, "ROW_PER_SYMBOL", row_per_symbol)
    rng = np.random.default_rng(groups * 1000 + bins)
    parent = None if classes is None else np.arange(bins) * classes // bins
    calls = []
    for _ in range(40):
        n = int(rng.integers(0, 900))
        ctx = np.minimum(rng.geometric(0.2, n) - 1, bins - 1)
        sym = np.minimum(rng.geometric(0.3, n) - 1 + (ctx % 3), alphabet - 1)
        calls.append((int(rng.integers(0, groups)), ctx, sym))
    enc = adaptive.AdaptiveModel(groups, bins, alphabet, parent)
    ops = OpList()
    for group, ctx, sym in calls:
        enc.encode(ops, group, ctx, sym)
    dec_model = adaptive.AdaptiveModel(groups, bins, alphabet, parent)
    dec = Decoder(ops.finish())
    for group, ctx, sym in calls:
        np.testing.assert_array_equal(dec_model.decode(dec, group, ctx), sym)
    dec.check_finished()
    np.testing.assert_array_equal(enc.counts, dec_model.counts)
    np.testing.assert_array_equal(enc.count_tot, dec_model.count_tot)
    np.testing.assert_array_equal(enc.total, dec_model.total)
    if classes is None:
        np.testing.assert_array_equal(enc.bin_counts, dec_model.bin_counts)
        np.testing.assert_array_equal(enc.bin_tot, dec_model.bin_tot)
    else:
        np.testing.assert_array_equal(enc.class_counts, dec_model.class_counts)
        np.testing.assert_array_equal(enc.class_tot, dec_model.class_tot)
    assert enc.seen == dec_model.seen


def test_observed_symbols_count_alike_in_encoder_and_decoder(monkeypatch) -> None:
    """Symbols counted without being coded (fresh literals' first uses) move the probabilities of
    what follows, and the encoder's bulk sums must count them where the decoder does."""
    from udic.lossless import adaptive
    from udic.lossless.coding import Decoder, OpList

    monkeypatch.setattr(adaptive, "BULK_ELEMENTS", 2000)
    monkeypatch.setattr(adaptive, "SINGLE_BULK_ELEMENTS", 2000)
    rng = np.random.default_rng(7)
    calls = [(bool(rng.integers(0, 2)), rng.integers(0, 300, int(rng.integers(0, 200)))) for _ in range(60)]
    enc = adaptive.AdaptiveModel(1, 1, 300)
    ops = OpList()
    for coded, sym in calls:
        enc.encode(ops, 0, np.zeros(sym.size, np.int64), sym) if coded else enc.encode_observed(sym)
    stream = ops.finish()
    dec_model = adaptive.AdaptiveModel(1, 1, 300)
    dec = Decoder(stream)
    for coded, sym in calls:
        if coded:
            np.testing.assert_array_equal(dec_model.decode(dec, 0, np.zeros(sym.size, np.int64)), sym)
        else:
            dec_model.observe(sym)
    dec.check_finished()
    np.testing.assert_array_equal(enc.counts, dec_model.counts)
    assert enc.seen == dec_model.seen
    # Without the observed counts the stream differs (they are not ignored).
    plain = adaptive.AdaptiveModel(1, 1, 300)
    ops = OpList()
    for coded, sym in calls:
        if coded:
            plain.encode(ops, 0, np.zeros(sym.size, np.int64), sym)
    assert ops.finish() != stream
    with pytest.raises(ValueError, match="by their bins"):
        adaptive.AdaptiveModel(1, 4, 10).encode_observed(np.array([1]))


def test_observed_symbols_in_bins_count_alike_in_encoder_and_decoder() -> None:
    """A model with context bins (the literals above, version 10) counts uncoded symbols in their
    bins between coded chunks, the same way in the encoder's bulk flush and the decoder."""
    from udic.lossless import adaptive
    from udic.lossless.coding import Decoder, OpList

    rng = np.random.default_rng(9)
    calls = []
    for k in range(40):
        n = int(rng.integers(1, 90))
        calls.append((k % 3 != 1, rng.integers(0, 6, n), rng.integers(0, 50, n)))
    enc = adaptive.AdaptiveModel(1, 6, 50)
    ops = OpList()
    for coded, bins, sym in calls:
        enc.encode(ops, 0, bins, sym) if coded else enc.encode_observed(sym, bins)
    stream = ops.finish()
    dec_model = adaptive.AdaptiveModel(1, 6, 50)
    dec = Decoder(stream)
    for coded, bins, sym in calls:
        if coded:
            np.testing.assert_array_equal(dec_model.decode(dec, 0, bins), sym)
        else:
            dec_model.observe(sym, bins)
    dec.check_finished()
    np.testing.assert_array_equal(enc.counts, dec_model.counts)
    np.testing.assert_array_equal(enc.bin_counts, dec_model.bin_counts)
    assert enc.seen == dec_model.seen


def test_token_table_matches_the_arithmetic() -> None:
    from udic.lossless import coding

    u = np.concatenate([np.arange(70000), np.random.default_rng(3).integers(0, 1 << 18, 50000)])
    for got, want in zip(coding.tokenize(u), coding._tokenize_arith(u.astype(np.int64))):
        np.testing.assert_array_equal(got, want)
    big = np.array([1 << 20, (1 << 31) + 5, 17])
    for got, want in zip(coding.tokenize(big), coding._tokenize_arith(big)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("colours", [3, 300])
def test_raster_copy_runs_match_a_plain_count(colours: int) -> None:
    from udic.lossless import raster

    rng = np.random.default_rng(colours)
    idx = rng.integers(0, colours, (6, 70))
    idx[3, 10:60] = idx[1, 5:55]  # a long run at (2, 5)
    idx[4, 20:45] = idx[4, 0:25]  # and one in the same row
    runs = raster._Runs(idx)

    def plain(y: int, x: int, dy: int, dx: int) -> int:
        sy, sx, n = y - dy, x - dx, 0
        if sy < 0 or (dy == 0 and dx <= 0):
            return 0
        while x + n < 70 and 0 <= sx + n < 70 and idx[y, x + n] == idx[sy, sx + n]:
            n += 1
        return n

    for y, x, dy, dx in [(3, 10, 2, 5), (4, 20, 0, 20), (3, 0, 1, -3), (5, 69, 5, 69), (0, 3, 0, 2), (2, 4, 3, 0),
                         (1, 0, 0, -1)] + [tuple(int(v) for v in rng.integers(0, 6, 4)) for _ in range(200)]:
        assert runs(y, x, dy, dx) == plain(y, x, dy, dx), (y, x, dy, dx)


def test_near_lossless_reuses_the_exact_payload_it_would_make() -> None:
    """The near-lossless encoder compares itself with the exact payload; the mode choice has
    just made it, so it is taken from the cache, and it is the same bytes either way."""
    art = _flat_art(40, 48)
    exact = lossless.encode(art, 8, 0)
    assert lossless._EXACT.get(lossless._exact_key(art, 8, 1)) == exact  # remembered by the exact encode
    real, made = lossless.encode, []
    lossless.encode = lambda *a, **k: (made.append(a[2:3]), real(*a, **k))[1]
    try:
        assert lossless._exact_payload(art, 8, 1) == exact and made == []  # taken, not made again
        lossless._EXACT.clear()
        assert lossless._exact_payload(art, 8, 1) == exact  # made afresh: identical
        assert made == [(0,)]
    finally:
        lossless.encode = real
    assert lossless.encode(art, 8, 2) == lossless.encode(art, 8, 2)


# Version 8 palette raster payloads (before long matches), made by the version 8 encoder (commit
# 1d924eb): they decode, and version 9 writes the same streams without long matches.
V8_PAYLOADS = {
    "raster_rows": "eNoBAAH//ggDMB4DCAAAAwD6+voePMgAAAAAAAMBOiojUzMPKAZhgfOoDcWF4D4h6RWuY2kPKxeEzD3XAvhLkPK3n2u2GO3kMdff99+Vae8O97Mezt0FZERM6y8/8JCttptD8TJTT019e3mDKRT9xewCS5wr/pwVqzlnctYHNro/FJ08zN25OWiCYi5vfuU+ifOIqr/XYi/a6TC74PPEJGyOKIS/gLjdHtgC2vamJ5Qp1IPf41/XzE1CDCVS5Bysg/16vI34/DurVJorcAFzgorBZD20XJV0T9yOjftzNK7f+NMcB/98GdM58ezYsVkSPQezJfsaS2GVHAvDkSNhRRznFRpyKAAcRnfU",
    "raster_carry": "eNoBFwHo/ggDMB4DCAAAAwD6+voAAAAePMgBAQEAAQABP+kwlTr3pkLJWGwD17CS5GATJ6pxuoTzWuKQAgJz3eUFrKBlsaKzz0deE5DnIZxOw3zseheLHCgxLAG9V90lmeVFls9cXNTxDTdR7x+g9umn1cuwrUmhTTYv0M7nuXJ27/lMf/itzsovS25HBcG6GFY13WMcx842CdHB0bHHT/h9rFfsKSqEBufAOKG6iC3jzQxT5kbeLsMtWS3Y8JJtu90oplFysji8SfeL6WznOZ5E8ZTpa11I+ElruDYTHRTt2MnswN0fHtL7SXyeX5jY9uziXhsymAHtveX68e4aZXZoqWwHZiXBDjTT0xbmdhEOu2o1ER70nO1rEVUiAC1Th4M=",
    "raster_tiled": "eNoB4gEd/ggDKBgDCAAABgBqJq8GoJXlYvmLSuW8za/xqUEBCAAgAEAIABAACC8QIAgQADAAAAFsy2uUQyR/a4AqemSCZe2Y7crErOUj9wRmci23K+T9S9WdxyI8ycW7HiqwikXTfC9yZ+Fav4OFqSOQ3X9nhisxsqPm1fIxDJ2Z+ZSWRQdah9s7Mp31JJfA1ejVxcOS2KhP4XPJa1SnCpKn627nQ6Rjogttxk/4SKom1M9fjEkoaK2mboFtZT1HOHFvycTf9ZuSqxR8N+jdbaW/VTM5tnoFDomNfQEzqmM/QD2etfqc1o8blLUgl5hgKq6VvCIdHj30UjQjvDOefzPo6VmX9ddChObNJgJm74RglIuw52gktYW95a1Sjd8xOD/aODJgpIKiSUmcy76miepduVRmBkipNBKvqi3joW3RsgLsWw0iA+rtlQri35hsometuHsk+KsJVkQfhpwkVRicVlcLz4XEpS4huL8UMV2QcQpLvkq4P+KbmgLIPqJhvbECUJAi5SDnE9IHVnV7LeWgiR+nIX83+LBBWx73Sa8vPzwnq5L4IrphgCmkm4zttQOgw7+91T7tdxNWKl3SV5MdaZDKhEYAi/BnVzOnPAZVPMv1k7QcCftYxOq60Dz8H/yd8KDUzwIAjTXkXA==",
}


def _v8_encoders() -> dict:
    return {
        "raster_rows": (_glyphs(30, 48), lambda px: _raster_payload(px, [], 0, 3)),
        "raster_carry": (_glyphs(30, 48), lambda px: _raster_payload(px, [(1, 0)], 1, None)),
        "raster_tiled": (_tiled(24, 40), lambda px: _raster_payload(px, None, 0, None)),
    }


def _raster_modes_at(payload: bytes) -> int:
    """Where a palette raster payload's mode bytes (lz, literal coding, symbol contexts) start."""
    from udic.lossless.payload import Reader

    reader = Reader(payload)
    header = lossless._read_header(reader, None)
    lossless._read_bands(reader, header)
    size = reader.varint()
    lossless._read_palette(reader, header, size)
    lossless._read_match(reader, header["height"], header["width"])
    return reader.pos


def _v8_as_current(payload: bytes) -> bytes:
    """A version 8 palette raster payload as version 9 writes it without long matches: the version
    byte, and a 0 (no long matches) after the symbol contexts byte."""
    after = _raster_modes_at(payload) + 3
    return bytes([OLD_RATES_VERSION]) + payload[1:after] + bytes([0]) + payload[after:]


@pytest.mark.parametrize("kind", sorted(V8_PAYLOADS))
def test_version_8_payloads_decode_and_are_reproduced(kind: str) -> None:
    import base64
    import zlib

    payload = zlib.decompress(base64.b64decode(V8_PAYLOADS[kind]))
    pixels, encoder = _v8_encoders()[kind]
    assert payload[0] == 8
    np.testing.assert_array_equal(lossless.decode(payload), pixels)
    assert "long_matches" not in lossless.describe(payload)
    assert _at_old_rates(encoder, pixels) == _v8_as_current(payload)


def _art_with_repeats(h: int, w: int, seed: int = 5) -> np.ndarray:
    """Noisy blocks (no neighbour predicts them) pasted again further on: long matches pay."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    idx = rng.integers(0, 40, (h, w))
    block = idx[2:10, 3:19].copy()
    for y, x in ((12, 5), (20, 30), (h - 9, w - 17)):
        idx[y : y + 8, x : x + 16] = block
    idx[h // 2, 10:] = idx[1, : w - 10]  # a row repeated from far above, shifted
    return colours[idx]


@pytest.mark.parametrize("make", [lambda: _glyphs(40, 64), lambda: _art_with_repeats(32, 56), lambda: _tiled(48, 80),
                                  lambda: _banded(40, 60)])
@pytest.mark.parametrize("literals", [0, 1, 2, 3])
def test_long_matches_roundtrip(make, literals: int) -> None:
    pixels = make()
    payload = _long_payload(pixels, None, 0.0, literals)
    assert lossless.describe(payload)["long_matches"] > 0
    np.testing.assert_array_equal(lossless.decode(payload), pixels)


def test_long_matches_by_hand() -> None:
    """Matches that overlap their own source (distance 1 and 3), copy from the same row, from rows
    above with a negative dx, and run across row ends; the recent distances are reused."""
    rng = np.random.default_rng(11)
    h, w = 9, 13
    idx = rng.integers(0, 7, h * w)
    matches = [(14, 10, 1), (30, 9, 3), (45, 20, w - 2), (70, 12, 3), (90, 15, w - 2), (108, 9, 1)]
    for start, length, dist in matches:  # apply in raster order, as the decoder does
        for p in range(start, start + length):
            idx[p] = idx[p - dist]
    pixels = (np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9], [80, 90, 100], [1, 2, 3]],
                       np.uint8))[idx.reshape(h, w)]
    long = raster.LongMatches(*map(np.array, zip(*matches)))
    ranks, new = raster._recent_ranks(long.dists)
    np.testing.assert_array_equal(ranks, [4, 4, 4, 1, 1, 2])
    np.testing.assert_array_equal(new, [1, 3, w - 2])
    found = lossless._raster_order(lossless.transforms.find_palette(pixels, 4096))
    for offsets in ([], [(1, 0)]):
        payload = lossless._encode_raster(pixels, 8, 0, found, offsets, raster.LZ_OFF, 1, None, long=long)
        assert lossless.describe(payload)["long_matches"] == len(matches)
        np.testing.assert_array_equal(lossless.decode(payload), pixels)


def test_split_distance_by_hand() -> None:
    dy, dx = raster.split_distance(np.array([1, 5, 6, 7, 10, 23, 40]), 10)
    np.testing.assert_array_equal(dy, [0, 1, 1, 1, 1, 2, 4])
    np.testing.assert_array_equal(dx, [1, -5, -4, -3, 0, 3, 0])
    assert np.all(dy * 10 + dx == [1, 5, 6, 7, 10, 23, 40])


class _Forged(raster.LongMatches):
    """Codes a match list the encoder would never write, with the pixels of a valid one."""

    def __init__(self, valid: raster.LongMatches, starts, lengths, dists) -> None:
        super().__init__(starts, lengths, dists)
        self.valid = valid

    def sources(self, pixels: int) -> np.ndarray:
        return self.valid.sources(pixels)


@pytest.mark.parametrize("starts, lengths, dists, message", [
    ([10, 40], [12, 9], [1, 50], "copies from outside the image"),  # the source is before the first pixel
    ([10, 300], [12, 1600], [1, 2], "runs past the image"),
    ([10, 40], [12, 9], [0, 3], "copies from outside the image"),
])
def test_forged_long_matches_are_refused(starts, lengths, dists, message: str) -> None:
    pixels = _art_with_repeats(32, 56)
    found = lossless._raster_order(lossless.transforms.find_palette(pixels, 4096))
    valid = raster.LongMatches([10, 40], [12, 9], [1, 2])
    forged = _Forged(valid, starts, lengths, dists)
    payload = lossless._encode_raster(pixels, 8, 0, found, [], raster.LZ_OFF, 1, 0, long=forged)
    with pytest.raises(ContainerError, match=message):
        lossless.decode(payload)


def test_a_new_long_distance_that_is_already_recent_is_refused(monkeypatch) -> None:
    """A recent distance must be named by its rank (the list never holds a distance twice): a list
    that sends it again as new is refused, not decoded with a shifted recent list."""
    pixels = _art_with_repeats(32, 56)
    found = lossless._raster_order(lossless.transforms.find_palette(pixels, 4096))
    long = raster.LongMatches([10, 40, 80], [12, 9, 9], [3, 3, 3])
    honest = lossless._encode_raster(pixels, 8, 0, found, [], raster.LZ_OFF, 1, 0, long=long)
    assert raster._recent_ranks(long.dists)[0].tolist() == [4, 0, 0]
    # (These pixels do not repeat, so the honest list decodes to another image: but it decodes.)
    assert lossless.decode(honest).shape == pixels.shape
    monkeypatch.setattr(raster, "_recent_ranks", lambda d: (np.array([4, 4, 0]), np.array([3, 3])))
    forged = lossless._encode_raster(pixels, 8, 0, found, [], raster.LZ_OFF, 1, 0, long=long)
    with pytest.raises(ContainerError, match="new distance is a recent one"):
        lossless.decode(forged)


def test_long_match_count_is_bounded_before_decoding() -> None:
    """The number of long matches is refused above pixels / MIN_LONG before anything is allocated."""
    from udic.lossless.payload import Reader, write_varint

    payload = _long_payload(_glyphs(40, 64))
    lz_at = _raster_modes_at(payload)
    count_at = lz_at + 3
    reader = Reader(payload[count_at:])
    reader.varint()
    forged = payload[:count_at] + write_varint(40 * 64 // raster.MIN_LONG + 1) + payload[count_at + reader.pos:]
    with pytest.raises(ContainerError, match="long matches"):
        lossless.decode(forged)
    # Long matches with free copies on are refused too.
    with pytest.raises(ContainerError, match="free copies"):
        lossless.decode(payload[:lz_at] + bytes([raster.LZ_CARRY]) + payload[lz_at + 1:])


def test_long_matches_pay_where_blocks_repeat() -> None:
    """The default encoder takes long matches where pasted blocks repeat, and they make it smaller
    than without them."""
    pixels = _art_with_repeats(48, 64)
    payload = lossless.encode(pixels)
    info = lossless.describe(payload)
    assert info["mode"] == "palette raster" and info["long_matches"] > 0
    np.testing.assert_array_equal(lossless.decode(payload), pixels)
    found = lossless._raster_order(lossless.transforms.find_palette(pixels, 4096))
    assert len(payload) < len(lossless._encode_raster(pixels, 8, 0, found, [], raster.LZ_OFF, 1))


# Version 9 palette raster payloads (long matches, before the literals above and palettes in
# context), made by the version 9 encoder (commit e2149d1): they decode, and version 10 writes the
# same streams where it makes the same choices (raw palettes, no literals above).
V9_PAYLOADS = {
    "long_glyphs": "eNoBMQHO/gkDQCgDCAAAAwD6+voePMgAAAAAAAMBOUYwfeksvw9WL02LOQDBVa6HGl0Y0J5r9nwxJyHJkSFCD7xswpcg7/Ba6R2fOL1ted83mm2o+sHy8qKM6kzfw9MOFgbv/KPc8HHJt9tXJScBDKi41fSIz99UHVpoHkI07xDST+aGhsbghE+J8K3PKYRpuGEZ7LuU5nG4+/zihwf/Hm8VE4uX4gKYipEYIoPZEGsATxpBnGvH+tczxlnlXB2jFVsAgiAaDJrl3D0MBwzrc4OQNfc3MtMumEO2nHz/EAnKDASAOGuagIv+mw5gCS4hx+JTImVdM5XiACXACqRohpTAjj4T6JJEyCkGAJbRovMMtAGkaeUw9Q8ZB+BYfxENCfqXIIRyhyF7XUQwoA+QwSqiq6GyJwgAJreIFg==",
    "long_tiled": "eNrjZA4wYOZgYGBjyFJbz7Zg6tOkn91eT/ecXf9xpSMDAyPjVsYkQRPvAJ0lxb7MLFLv5yidFGuwD3XklJNbsTwhZMVhCwPJhg3KTAVtfMI9IYpR3EVp5Z87e9xPCV6y393Gc+uLYIyAcnzyKmaR6bfzAp0nBexV+78nquDFB/Wn3/8oblpn0je7Tvd0x8L73HviY10/+8xe9et3PNdn/42N1313nv7g3FXzSivYkMW6RPA///blT2/fFDs3wcx/Awt/1fKvjSovrL0X8Yo9Uijc8DX9VnlF69TMmm+++rd//jbs3+rXvFPjzo1Tj+OKNV88Lrcvv57PsK5rU29ESb303aQ+nUXGR61ZeZgbgsUZGBgkBAsYwIBxAjOIEmJgYVZgCChvdfToD3Wo6KqtljjidG7VqQsHuxXO8ibIfTO5UHjkWuyd1NjGbWWB23c+tFql2LB4rbSDgCNLqJ8li7f+3i8NHEoVDCAsyCDQqdigwaDAxsAjeEfz8oH7m/2OLksVkjQyYGBo+MrMgAkcGBxYHBgsWBg+MHxoYGeomMAqyMTAAAAvx6Ll",
    "raster_carry": "eNoBGAHn/gkDMB4DCAAAAwD6+voAAAAePMgBAQEAAQABAD/pMJU696ZCyVhsA9ewkuRgEyeqcbqE81rikAICc93lBaygZbGis89HXhOQ5yGcTsN87HoXixwoMSwBvVfdJZnlRZbPXFzU8Q03Ue8foPbpp9XLsK1JoU02L9DO57lydu/5TH/4rc7KL0tuRwXBuhhWNd1jHMfONgnRwdGxx0/4faxX7CkqhAbnwDihuogt480MU+ZG3i7DLVkt2PCSbbvdKKZRcrI4vEn3i+ls5zmeRPGU6WtdSPhJa7g2Ex0U7djJ7MDdHx7S+0l8nl+Y2Pbs4l4bMpgB7b3l+vHuGmV2aKlsB2YlwQ4009MW5nYRDrtqNREe9JztaxFVIgAy6IeE",
}


def _v9_encoders() -> dict:
    return {
        "long_glyphs": (_glyphs(40, 64), lambda px: _long_payload(px, None, 0.0, 3, OLD_SEARCH)),
        "long_tiled": (_tiled(48, 80), lambda px: _long_payload(px, None, 0.0, 1, OLD_SEARCH)),
        "raster_carry": (_glyphs(30, 48), lambda px: _raster_payload(px, [(1, 0)], 1, None)),
    }


def _v9_payload(kind: str) -> bytes:
    import base64
    import zlib

    return zlib.decompress(base64.b64decode(V9_PAYLOADS[kind]))


@pytest.mark.parametrize("kind", sorted(V9_PAYLOADS))
def test_version_9_payloads_decode_and_are_reproduced(kind: str) -> None:
    payload = _v9_payload(kind)
    pixels, encoder = _v9_encoders()[kind]
    assert payload[0] == 9
    np.testing.assert_array_equal(lossless.decode(payload), pixels)
    assert not lossless.describe(payload)["literals_above"]
    assert _at_old_rates(encoder, pixels) == bytes([OLD_RATES_VERSION]) + payload[1:]


def test_version_9_payloads_cannot_use_version_10_codings() -> None:
    """A literal coding with the above bit, or a palette coded in context, in a version 9 payload
    is refused (version 9 decoders never knew them)."""
    payload = bytearray(_v9_payload("raster_carry"))
    at = _raster_modes_at(bytes(payload)) + 1  # the literal coding byte
    payload[at] |= raster.LITERALS_ABOVE
    with pytest.raises(ContainerError, match=f"literal coding {payload[at]} is invalid"):
        lossless.decode(bytes(payload))
    payload = bytearray(_v9_payload("raster_carry"))
    from udic.lossless.payload import Reader

    reader = Reader(bytes(payload))
    lossless._read_bands(reader, lossless._read_header(reader, None))
    reader.varint()
    payload[reader.pos] = lossless.PALETTE_IN_CONTEXT
    with pytest.raises(ContainerError, match="palette coding 2 is invalid"):
        lossless.decode(bytes(payload))


def _few_colours_blobs(h: int, w: int, colours: int = 40, seed: int = 6) -> np.ndarray:
    """Blobs of random colours on white, each colour placed under a few colours above again and
    again: the literals' colour above predicts them."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 256, (colours, 3), dtype=np.uint8)
    pixels = np.full((h, w, 3), 255, np.uint8)
    for _ in range(h * w // 12):
        y, x = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 3))
        k = int(rng.integers(0, colours // 2))
        pixels[y, x : x + 3] = table[k]
        pixels[y + 1, x : x + 3] = table[colours // 2 + k]  # below k: always its partner
    return pixels


# Version 10 payloads (the adaptive models' first rates), made by the version 10 encoder (commit
# 6f7a4e0): they decode, and version 11 writes the same streams at the old rates (only the rates
# changed: adaptive.RATES_V3 → RATES_V11).
V10_PAYLOADS = {
    "above_fresh": "eNoBeQGG/goDKB4DCAAAJwD////80/WhLXOHmeDY2f4jptl+4rE28sxQ/KF7HxX1s/hlM2EQjITfX23Fid9/ID4VD66oIAXM4t0arHZ+dcHBL6kNFJx4ttOgrMnqXE5GAlxxkSP+gu78lWXNgpBtPH5UeeApfHj6aCswe15X7zNGFZ5zGB4AAAYBAD0kgsc+Q5BWKGYXMvo/NuvhOGPEtxhFyDvohAQmcxTYiLL2cvZFgp6MrpnEm3xmutNRbWwAHLWKeldYR42IgJ04QcBUU5BjNzH3IEqN4T/jygHSxHR9GlxJ1188TfqEFRhNjGgtY9NbDlXQ7bFo5XkC+5FcYPmDnyYO5TIKfqj9VvptYkWbVjgDOq85G3u0iqdsn52BCO0G0xsR11s9qECmDmTznN7hAhq4R00Yl3CN8b4nY++96A2NCz4erc/2skOK/o7GflZC6f2usHxARnxhoxnguL6RTCLDZ/hlsn8DawwPD8IeeiMpskIqGv339nMFAAAAejOxMA==",
    "long_above": "eNoBcQWO+goDOCADCAAAKADcCDxICLklNdV2JGImgQE1jSHK/1U25DAUzvV/LSFCAKUwRGQqSe0mR4WKY0Ng7INYb78NjwKhfEcLtIoKZ86o5bh/qQEQwE6r7qu1J5eSMrP5Qyh2BFcQwvq9tUAGeD/OwK1iewyZzAWRaM4zzuWnbfeQuBjEIzkAAAcBGLoCu18WeIgcyQeNCDnhInlOSjow3EJFh/jSIlRIWH87Z+ANdCWlamZWn0NG+ZuEFXgDjQrFgNruGbP3T8TBl6a4TwtdqBt6e73VETOmt/5TJ5lF3DtUDNf6PNz40KESPWBlD8Hdh9zTY5RhVzhI2QPS/bAASB8uykcFq/g/ztNCMXIyLuV6jeRZrW8+UnbqqAEoBiWMONiDjtbcL6w274cxRCf3LuA4MkX+kQDs1YuDHy18RKVdgq+MMbwXMeUV94qvL/sL+y+JC/NIT14yM7IUF2m1Q9m0cp67fLkG0vFcDsgkiY+uv6OjNW1CINS3F7uAzenDjI7K8LbMWPLBIj60RlzkARz5EpdiwhQnarSWNjLlPvh5AiRyg3hUsoAAP1fj+Ajs3AQqEi3r5flQTNYqtl+uc7bXcFgcT4ktxsW2KlJjZvA4o0iNmuMgc/oTvNWdp15NGIJBfop9eYHvAxDgIYy7J0yLjCwG5NMAgmGPSlGrQC6dV/4aVJd67Ej5oAaoXSIc4laV6CffJ+u8zhYGHsH9JFHZByd8p9iutn7/HdIOOiIfUprZonvNL/JcO/egppC/5mCX/fOBjZRhMOifuUmIyFOq6ZR8VarVfQUB47n0dCTE8EZ7Np/oxiwdih3aotPGUWX/fKZjbQe6r/3fz3FR0T43/RxexsuiQNmAbLW9qOvAPfEV8+T11a6283H/4/WZHpedGc8Y93XMXllN9ycVCUV0SsG8Eb5IcwAndSaZP9AXV7foO+bLoopR8ai2BKYcWKrhflIWFoIeCIA6D7rLsScsciWFPugsGGc4JNzrw+bLEJ2G4apU/AGyMsGmQXv8M4dOzx9w3MODdKccNOZVyol9OMtIuqn8h8qAenii2HraPw9ZjYWP0pYK45eAJxXF4Y/+18HpQU1JZG1XydlMQRT6q2IHTIF1RCiJUVURZIoaMoxWg1/h029lqimc7HQqCIowgKwXci0bklpS23nLJgJx1yBFyoUVk/x2GICkvtMD9ko8WpVp8xU1TkftUYT8D1iQBmTGDLhgxeFpjFnFkORPLQOCEEO3hJjRghvffgnOhzu4LkZhvT2UgmKqQ0UgXERDm9rsG6kU/PB1NBszSciwcXrwvcEj5AKY/e2zftf4RWJPCxQc6j735f3AQsIt/wg9dZsMKlYumyFs71qAo6+U/60bprMnb+EVBQdZdKo3urnuM/0mNhblmNb5RUCifFEZ6cJBYqBjxBWcZmBhL2FpCcgl23YhyD2adJovVKcIllp2ZoEW49NUoP58v1A9Q8xAxyj9epys/k+dCIn4Th400kyFrlUGXqT2gUeTaTavD0LhleYTyhqhk2ayzjwRkATakBW5fXQLPXf0/1/CxScUoSyuFAYS6vAbhsI+7e3LjUO2dJVM+QROhU0ne54pc1/5hJPF6/snlGxiGu3IJGDLuqhD9a5lVbOFFcAzjT29nTQnh6VhJW9K8lJNa/iEyGhZvW/Jbkn8KBoPH7eLQoetr9hikUWI91b7EaNMyX0jfiIwQLBPLc8GB/Q5Lgr0GLRT8gpH5feubnv4EVku+/qbOPVnGb/8gLG71Th+sOzkPF0krJTC7H/4INIYRuaoOZPtWNNIryo2zw1MLLFHEJf2ukSA8iBUKpcXdIiIqMhE0MuTi/OUmNCuoZkom9XeuRLRzxlm26LW",
    "predictive": "eNpFkF1IU3EYxs/7/5/z3znHNRtplhbUog8qv1BQyiyKLKIvJKObgSWMBDMDK3FYx5pLEnPINAKL0DVNnTlyok5NXH6sSYFTnFPK8qtoiZ6miBfZ0S56fs9z8V688PDwwMsxS1FAAUhZDYF2NIJhBf8HwtfVKKNgWWIO/YOSnmzYhnNzIySlU2Ai5VgtrpkCFz1AzIxrPYVgA2gLEHFiYlISzPOPYFRCJzEOkGFbv7wSlSgPBPQCidCF+qEW6ZEJwQRyw+0afLKWsYMTtUsVm9gH5MgNDzoERu4lW6RY4dqUFmZaCb1sLbskm5JXgpWzo0UFtPF+XLVlZlPNjo5QMJJC9h2qAHNgK/dYDsuMSFcwX9BQkDvEgksRNMmfsgbUQFwyAeplRgQ95Dl5j39iH20K9ICOy4AV5jUS2Fl+v56sQiku2jrFQTuZ4KbQL9wJcWujMcVQLk2m1kCCiETcIBvHncREWxEkzZLTXYq39B8eMg0b9KwD5cMz/I2GOSa0CMXV4fBSUgZQgUX2Iz/IvKLTIkcJBWZZATQzJWhzC+w795kM0jE9St+EwpEdP9w5UD06dyI/oCxipirv+zZmZ9rGi0GRQsZ0XbTqMNxVBV861bu3P/56Sf9Sj8viz3TYcvY8WYx/KOhTst7oU0fObxeGnK3+s9pPC84W62qx2Ru3q95763ijN2oB+1LCrd60sO6BrjP1jc3RijF3snuyW2upmj7omzdk3fOl6vomjxV8dbbqs8f8u3V9M1SY42aiUK6JvaD6nWNsMly+Nnt0+IA9Jt3zI++qcjghtjrYeOeDXH1Fy5LkjijNfaCovxhE+B4=",
    "near": "eNoBgwF8/goDDBADCAACmwECtAIAAIAIGl4uCOlb6+49rwWU7oHUKvsPsnFeDCFn0erOTnumesdR1+nmdUAwsv9pdskL+zGJuFivzZnbl+7HGnmG+NaZKnBjM83U5hW+MiWZyfFIo4J4BBAc96oupG0dXsH7KIlFnrkyHO48dAx09nOw8/RJk7vBIm8rM/hMk7vMPA61QhCIlYs4IzoZOrw3NAD8AHqxVct0R+8KM/+HGLhmHy2VX/JALXrbs3rCL/R9Q+wKlcgsN264DxwYmrNcNITiHHW3GTHoggfnHjaG7FKEctFzx/d3OcCiVZ4P3SpFHchuo1fahDln7Te3vlFIh7fThs24zNhT6E16V3KdJmjys2ssoy9JVxJi0hJoYU6TJd5JMSFKP4EOcl9jWEByBfXnGlyNIQVy5otEmJ4Kft4IeAAAAAAAAgEAD8lMly28NGZnElL1es8pdDGbqPU70A5ws87D8qcZP/g+icn8sodTlduJvsRD9VuFv1Gl6kjnVeyvNwAAAOO9seU=",
    "default_glyphs": "eNoBxQA6/woDMB4DCAAAAwD6+voAAAAePMgAAAAADysOAHI4SvCuo+mrEfvldgRMEcuSnbHgsAJ955Ss86fV8dOYPNrsy4pYSKVf1TF7Y6WS5KENLeFiWFMfktg/NtXBk4m8Xaej5YcSe3kaP+KuE9xJAp4WNvfai2Q6oEmJKX4yp8D/PM/rWJfuS7ZEDmjZ98CZluihDrqEuhaApKootyPUCHRh/FwHVIMprvlHT8D1j7n2GRp9wwW4MUAWFtGG1aWZw3WYssOmN+ioDPhe6g==",
    "in_context": "eNoB1gMp/AoDPCgDCAAARwJ8nVIEawlLAgfIqwhnKagWrE6PBYPyaAFH9ewK57w3BqMnPwgkUtI43PQtGo4g3wB3PSwZ5K6fFXtMOgE/bukZ0ASbEvPDJAqW0wgTCCMsnYm2ewNkfgMYMXJJG+9wEhPC0SMZGGNbGC2wfwYW1VcGdbu5AcPHyMj+rFMBAAAAAwEA0gGSilyxbQGnKIJnxk3oWMZjii2R7tUHOqBddVlTLcJFR9rJdkhYdfzKvgjp1RAbvDZkn95inNhl32SUF2KZibKUzM+gUrOvIbupIfUlWcz5Pk5C28gAnX3V67EVn7LBUg2dRvHvIUZuCLD5x957uLquzXdzIHlPsUllA0CCfdP2MM6HIatdOcI1QIXo2ibymvezl+Ibr0JiMMFd5cH/SWjGLjw03HNibiIGVcbtPmybPy+40CaqkBW3afGWfF9Hm4TttQpeSnP9YYnFh3JRjBzAOiE4Nm4gDS4/Ik1szLZ9U+vGPzbcyyBUaPgSzKmFUiAEUjqPlGzRO1zamdEuk0O47XNOgaztFPHV3D1Hcdz4vCRbTHOwMzKPVqh1gJ1kKa0bkD6Pru5UU3/QpxNkJPMFVATtEyUs/z3GSoLYvT0YMOffUk6DoRnYYJcReXkafM2BJ5k1PTkV64qrTKCTJR3apO+sILYoPUrRVsgfc+R+tFTm+V1dcml33yKxTtt3stsIFMVC8rX5Fm6xpwdda7zDXwHzse9uaytzjkZ07MAbPg/T7SQ1TOJsRRKjp9CoOKWMqm5NwnSE3OrIwXBYPPxFKkQyFkN1zXsG/8E8GCfPyf+bkCDuoKkEqpIoWZtzlLSWrMh/JNKdZeJ9NVNpIGWe0QlYQzhqCbDYwF2Cy4+3pGyFC6E1lLqjaDuGebJ1mSBuuwWMorZbQ4MmyAXpUe7YjQYzTm9l5n/bTbU9xr5aSvM9KOnw0Q9/9bKO2y0tb7Sgy4bkiAnsdEUbgTlSfXcIgRmMNgcas/fAyTjX4mJbsUQJEXRsKXKDl7fUSWaDsR1LW8OwOg+I88XtjIHz1SZJkGOB66CMb/U1By9JBZq5cAuw1qS4GBM+nE6PcNdqfEE7B1ixR3wYA1N6ibfEll1SA7dZ1y03fh5XmDE2f6shNDBLTwLT8e+E43t6enmNn19skalrebxAqb0/Jd4ljgAmN7QkqGbqIDjT4JafcgIYyXqJ4a3nk4Vlmgg6QbYwBVHN5Yd57OgOcKBfhFNV1XbqpdZ1CUSZ6fhyxIb/Sbr1kCV79BrRRvLC61f5hhQ0HpoNACS22W0UKbtN8v0OZ/3OBFXm0RsAAABB7cxw",
}


def _v10_encoders() -> dict:
    return {
        "above_fresh": (_few_colours_blobs(30, 40), lambda px: _raster_payload(px, [], 0, 6)),
        "long_above": (_art_with_repeats(32, 56), lambda px: _long_payload(px, None, 0.0, 7, OLD_SEARCH)),
        "predictive": (_smooth(12, 10, 3), lambda px: lossless._encode_predictive(px, 8, 0, 1, 1, False, [])),
        "near": (_smooth(16, 12, 3), lambda px: lossless.encode(px, 8, 2)),
        "default_glyphs": (_glyphs(30, 48), lambda px: lossless.encode(px)),
        "in_context": (_banded(40, 60), lambda px: _raster_payload(px, [], 0, 3)),
    }


@pytest.mark.parametrize("kind", sorted(V10_PAYLOADS))
def test_version_10_payloads_decode_and_are_reproduced(kind: str) -> None:
    import base64
    import zlib

    payload = zlib.decompress(base64.b64decode(V10_PAYLOADS[kind]))
    pixels, encoder = _v10_encoders()[kind]
    assert payload[0] == 10
    decoded = lossless.decode(payload).astype(np.int64)
    bound = lossless.describe(payload)["max_error"]
    assert np.abs(decoded - pixels).max() <= bound
    assert _at_old_rates(encoder, pixels) == payload  # a genuine version 10 payload
    current = encoder(pixels)
    assert current[0] == lossless.VERSION == 13 and current[1:] != payload[1:]
    assert np.abs(lossless.decode(current).astype(np.int64) - pixels).max() <= bound


def test_rates_follow_the_payload_version() -> None:
    """Encoders write the current version at its rates; each version decodes at its own."""
    from udic.lossless import adaptive

    assert adaptive.current() == adaptive.rates_for(lossless.VERSION) == adaptive.RATES_V11
    assert all(adaptive.rates_for(v) == (adaptive.RATES_V11 if v >= adaptive.RATES_VERSION else adaptive.RATES_V3)
               for v in lossless.OLD_VERSIONS)
    with adaptive.using(adaptive.RATES_V3):
        assert adaptive.AdaptiveModel(1, 1, 4).rates == adaptive.RATES_V3.raster
        assert adaptive.AdaptiveModel(1, 1, 4, family=adaptive.PLANES).rates == adaptive.RATES_V3.planes
    assert adaptive.AdaptiveModel(1, 1, 4).rates == adaptive.RATES_V11.raster
    assert adaptive.AdaptiveModel(1, 1, 4, family=adaptive.PLANES).rates == adaptive.RATES_V11.planes
    assert adaptive.RATES_V11.planes != adaptive.RATES_V11.raster
    # The version byte follows the rates the stream was coded at, so no payload is mislabelled.
    for pixels in (_glyphs(30, 48), _smooth(20, 24, 3)):
        with adaptive.using(adaptive.RATES_V3):
            old = lossless.encode(pixels)
        new = lossless.encode(pixels)
        assert (old[0], new[0]) == (10, lossless.VERSION)
        for payload in (old, new):
            np.testing.assert_array_equal(lossless.decode(payload), pixels)
    with adaptive.using(adaptive.RateSet(adaptive.RATES_V11.planes, adaptive.RATES_V3.raster)):
        with pytest.raises(ValueError, match="no payload version"):
            lossless.encode(_glyphs(30, 48))


@pytest.mark.parametrize("literals", [4, 5, 6, 7])
@pytest.mark.parametrize("lz", [0, 1, 2])
def test_literals_above_round_trip(literals: int, lz: int) -> None:
    """Literals in the context of the colour above (version 10), with and without the cache and
    fresh literals, under every free copy mode."""
    for pixels in (_banded(40, 60), _glyphs(30, 48), _few_colours_blobs(30, 40)):
        payload = _raster_payload(pixels, None, lz, literals)
        info = lossless.describe(payload)
        assert info["literals_above"] and info["fresh_literals"] == bool(literals & 2)
        assert info["literal_cache"] == bool(literals & 1)
        np.testing.assert_array_equal(lossless.decode(payload), pixels)


@pytest.mark.parametrize("literals", [4, 6, 7])
def test_literals_above_with_long_matches(literals: int) -> None:
    for pixels in (_art_with_repeats(32, 56), _glyphs(40, 64)):
        payload = _long_payload(pixels, None, 0.0, literals)
        assert lossless.describe(payload)["literals_above"]
        np.testing.assert_array_equal(lossless.decode(payload), pixels)


def test_literals_above_pay_where_the_colour_above_predicts_them() -> None:
    """Each colour's partner sits below it: in the context of the colour above the partner costs
    little (the literal cache finds much of the same, so effort 1 may keep the cache instead)."""
    pixels = _few_colours_blobs(48, 64)
    for base in (raster.LITERALS_PLAIN, raster.LITERALS_FRESH):
        plain, above = (len(_raster_payload(pixels, [], 0, lit)) for lit in (base, base | raster.LITERALS_ABOVE))
        assert above < 0.92 * plain, base
    _roundtrip(pixels)


def test_literal_contexts_by_hand() -> None:
    """The colour above, capped at the last bin; row 0 in the last bin; one bin: all 0."""
    row = np.array([0, 3, 9, 2])
    assert raster.literal_contexts(row, np.array([0, 1, 2, 3]), 5).tolist() == [0, 3, 4, 2]
    assert raster.literal_contexts(None, np.array([1, 2]), 5).tolist() == [4, 4]
    assert raster.literal_contexts(row, np.array([2]), 1).tolist() == [0]
    assert raster.literal_bins(10) == 11  # every colour and row 0
    assert raster.literal_bins(256) == 256  # colour 255 shares the last bin with row 0


def test_literals_above_with_a_large_palette_are_refused() -> None:
    """A forged payload with the above bit and more than 256 colours: every literal could need a
    probability row as wide as the palette, so the format refuses it before decoding."""
    from udic.lossless.payload import Reader

    rng = np.random.default_rng(3)
    many = rng.integers(0, 256, (300, 3), dtype=np.uint8)[np.arange(40 * 60) % 300].reshape(40, 60, 3)
    forged = bytearray(_raster_payload(many, [], 0, 2))
    reader = Reader(bytes(forged))
    lossless._read_bands(reader, lossless._read_header(reader, None))
    assert reader.varint() == 300
    forged[_raster_modes_at(bytes(forged)) + 1] |= raster.LITERALS_ABOVE
    with pytest.raises(ContainerError, match="at most 256 colours, the palette has 300"):
        lossless.decode(bytes(forged))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_palettes_in_context_round_trip(channels: int) -> None:
    """Gradient bands (100-odd colours) with gray, gray + alpha, RGB and RGBA samples, and 16-bit:
    the palette is coded after the index plane from the colours of its image neighbours."""
    base = _banded(48, 64)
    alpha = (np.arange(48 * 64).reshape(48, 64, 1) // 40 * 16 % 256).astype(np.uint8)
    pixels = {1: base[..., 1:2], 2: np.dstack([base[..., 1:2], alpha]), 3: base, 4: np.dstack([base, alpha])}[channels]
    for samples, depth in ((pixels, 8), (pixels.astype(np.uint16) * 257 + 1, 16)):
        payload = _raster_payload(samples, [], 0, 2) if depth == 8 else lossless._encode_raster(
            samples, 16, 0, lossless._raster_order(lossless.transforms.find_palette(samples, lossless.MAX_PALETTE)),
            [], 0, 1, 2)
        info = lossless.describe(payload)
        # (a 16-bit gray ramp codes smaller as a list: its in-context residuals are all 257)
        assert info["palette_coded"] and (info["palette_in_context"] or depth == 16), (channels, depth)
        np.testing.assert_array_equal(lossless.decode(payload), samples)


def test_a_palette_in_context_is_smaller_than_in_a_list() -> None:
    """Anti-aliased text in many shades over a vertical gradient: a shade's image neighbours
    predict it better than the colour before it in the list."""
    h, w = 48, 96
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([60 + yy * 2, 80 + yy, 120 + yy // 2], axis=-1)
    ink = np.array([250, 250, 240])
    rng = np.random.default_rng(2)
    cover = np.clip(rng.integers(-3, 5, (h, w)), 0, 4) / 4 * ((xx // 3 + yy // 5) % 4 == 0)
    pixels = (background * (1 - cover[..., None]) + ink * cover[..., None]).round().astype(np.uint8)
    found = lossless._first_use_order(lossless.transforms.find_palette(pixels, lossless.MAX_RASTER_PALETTE))
    palette, index = found[0].astype(np.uint8), found[1]
    listed = lossless._palette_payload(palette, 8, 1)
    from udic.lossless import colours

    in_context = colours.encode(palette, index, 8)
    assert len(in_context) < 0.9 * len(listed)
    assert colours.decode(in_context, index, palette.shape[0], 3, 8).tolist() == palette.tolist()


def test_a_damaged_palette_in_context_is_refused() -> None:
    pixels = _banded(40, 60)
    payload = _raster_payload(pixels, [], 0, 2)
    assert lossless.describe(payload)["palette_in_context"]
    from udic.lossless.payload import Reader

    reader = Reader(payload)
    lossless._read_bands(reader, lossless._read_header(reader, None))
    reader.varint()
    reader.u8()
    length = reader.varint()
    start = reader.pos
    broken = bytearray(payload)
    broken[start + length // 2] ^= 0x5A
    with pytest.raises(ContainerError):
        lossless.decode(bytes(broken))
    with pytest.raises(ContainerError):  # a palette stream one word short
        lossless.decode(payload[: start - 1] + bytes([length - 4]) + payload[start : start + length - 4]
                        + payload[start + length :])


def test_effort_1_picks_the_colour_transform_that_codes_smallest() -> None:
    """Effort 1 ranks the colour transforms by a centre crop's coded size: on photo-like images
    where the transforms differ it lands on the one whose full encode is smallest."""
    from udic.lossless import transforms

    from PIL import Image

    from udic.train.data import default_data_root

    rng = np.random.default_rng(2)
    smooth = _smooth(344, 336, 3)  # above SMALL_TRIAL_AREAS crops: the crop decides
    gray_ish = smooth[..., 1:2].astype(np.int16) + rng.integers(-3, 4, (344, 336, 3))  # channels nearly equal
    images = [smooth, np.clip(gray_ish, 0, 255).astype(np.uint8)]
    kodim23 = default_data_root() / "kodak" / "kodim23.png"
    if kodim23.exists():  # a photo where the entropy proxy of version 10's encoder took YCoCg-R (3 % larger)
        images.append(np.ascontiguousarray(np.asarray(Image.open(kodim23).convert("RGB"))[64:448, 160:480]))
    for pixels in images:
        assert pixels.shape[0] * pixels.shape[1] > lossless.SMALL_TRIAL_AREAS * lossless.TRIAL_SIDE ** 2
        options = (transforms.YCOCG_R, transforms.SUBTRACT_GREEN, transforms.GREEN_FIRST)
        sizes = {t: len(lossless._encode_predictive(pixels, 8, 0, 1, t, False, [])) for t in options}
        assert lossless._transform_candidates(pixels, 8, 0, 1) == [min(sizes, key=sizes.get)]
        payload = lossless.encode(pixels)
        assert lossless.describe(payload)["transform"] == transforms.TRANSFORM_NAMES[min(sizes, key=sizes.get)]
        np.testing.assert_array_equal(lossless.decode(payload), pixels)


def test_effort_1_encodes_every_colour_transform_of_a_small_image() -> None:
    """Up to SMALL_TRIAL_AREAS crops' area a crop is too small a share to rank the transforms
    by (a 300 x 300 screenshot: 2.2 % lost), so every transform is encoded."""
    from udic.lossless import transforms

    side = lossless.TRIAL_SIDE * 3  # 9 crops' area: above the 4 of before, below the limit
    pixels = _smooth(side, side, 3)
    assert lossless._transform_candidates(pixels, 8, 0, 1) == [
        transforms.YCOCG_R, transforms.SUBTRACT_GREEN, transforms.GREEN_FIRST]
    bigger = _smooth(side * 2, side * 2, 3)
    assert len(lossless._transform_candidates(bigger, 8, 0, 1)) == 1


def test_a_small_image_with_a_raster_palette_picks_its_transform_by_the_crop(monkeypatch) -> None:
    """From MANY_COLOURS_TRIAL_AREAS crops' area, an image with a raster palette (4,097-16,384
    colours: a pixel-art sheet) ranks the colour transforms by the crop, where prediction is only
    the fallback; the same size without such a palette still encodes every transform."""
    rng = np.random.default_rng(35)
    side = 256  # 7 crops' area: between MANY_COLOURS_TRIAL_AREAS and SMALL_TRIAL_AREAS
    assert lossless.MANY_COLOURS_TRIAL_AREAS * lossless.TRIAL_SIDE ** 2 < side * side
    assert side * side <= lossless.SMALL_TRIAL_AREAS * lossless.TRIAL_SIDE ** 2
    cells = rng.integers(0, 256, (side // 2, side // 4, 3), dtype=np.uint8)  # 8,192 blocks of 2 x 4
    sheet = np.repeat(np.repeat(cells, 2, axis=0), 4, axis=1)
    colours = len(np.unique(sheet.reshape(-1, 3), axis=0))
    assert lossless.MAX_PALETTE < colours <= lossless.MAX_RASTER_PALETTE
    assert len(lossless._transform_candidates(sheet, 8, 0, 1, many_colours=True)) == 1
    assert len(lossless._transform_candidates(sheet, 8, 0, 1)) == 3
    seen: list[bool] = []
    original = lossless._predictive_forms

    def spy(*args, **kwargs):
        seen.append(kwargs.get("many_colours", False))
        return original(*args, **kwargs)

    monkeypatch.setattr(lossless, "_predictive_forms", spy)
    payload = lossless.encode(sheet)
    assert seen == [True]
    np.testing.assert_array_equal(lossless.decode(payload), sheet)


def _recording(monkeypatch, name: str) -> list[int]:
    """Calls of the pixel coder's ``name`` (still run), recorded."""
    calls: list[int] = []
    original = getattr(lossless, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(lossless, name, wrapper)
    return calls


@pytest.mark.parametrize("colours, tried", [(12, 1), (40, 0)])
def test_effort_1_codes_the_interlaced_palette_only_for_a_few_colours(monkeypatch, colours: int, tried: int) -> None:
    """Mode 2 is tried at effort 1 up to INTERLACED_MAX_COLOURS colours (session 35: from 17 to
    256 it lost to the raster scan on every dev image), and at effort 2 whatever the count."""
    rng = np.random.default_rng(colours)
    palette = rng.integers(0, 256, (colours, 3), dtype=np.uint8)
    cells = rng.integers(0, colours, (24, 24))
    cells.reshape(-1)[:colours] = np.arange(colours)  # every colour used
    pixels = palette[np.repeat(np.repeat(cells, 4, axis=0), 4, axis=1)]
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) == colours
    calls = _recording(monkeypatch, "_encode_palette")
    payload = lossless.encode(pixels, effort=1)
    assert len(calls) == tried
    np.testing.assert_array_equal(lossless.decode(payload), pixels)
    calls.clear()
    lossless.encode(pixels, effort=2)
    assert len(calls) >= 1


def test_a_gray_photo_is_predicted_without_trying_the_palette_forms(monkeypatch):
    """A gray image always has a palette (≤ 256 levels); on a photo the palette forms lose to
    prediction and cost most of the encode, so effort 1 predicts and skips them."""
    photo = _smooth(80, 96, 1)
    assert lossless._repeat_share(photo) <= lossless.GRAY_MATCH_SHARE
    palette_calls = _recording(monkeypatch, "_encode_palette")
    raster_calls = _recording(monkeypatch, "_begin_raster")
    payload = lossless.encode(photo, 8, 0, 1)
    assert np.array_equal(lossless.decode(payload), photo)
    assert lossless.describe(payload)["mode"] == "predictive"
    assert not palette_calls and not raster_calls


def test_a_black_and_white_photo_saved_as_rgb_is_predicted_too(monkeypatch):
    """R = G = B: the same palette of at most 256 levels, the same answer, and one plane coded
    (the gray transform): one byte more than the same photo as gray."""
    gray = _smooth(80, 96, 1)
    photo = np.repeat(gray, 3, axis=2)
    raster_calls = _recording(monkeypatch, "_begin_raster")
    payload = lossless.encode(photo, 8, 0, 1)
    assert np.array_equal(lossless.decode(payload), photo)
    assert lossless.describe(payload)["mode"] == "predictive" and not raster_calls
    assert lossless.describe(payload)["transform"] == transforms.TRANSFORM_NAMES[transforms.GRAY]
    assert len(payload) == len(lossless.encode(gray, 8, 0, 1)) + 1


@pytest.mark.parametrize("max_error", [0, 1, 4, 16])
def test_the_gray_transform_round_trips_and_keeps_the_bound(max_error):
    """RGB and RGBA images whose colour channels are equal code one colour plane, exactly or
    within ±N, and decode with R = G = B again; at ±N that is what the gray image costs."""
    gray = _smooth(40, 52, 1, seed=3)
    alpha = np.tile((np.arange(52, dtype=np.uint8) * 5)[None, :, None], (40, 1, 1))
    for pixels in (np.repeat(gray, 3, axis=2), np.concatenate([np.repeat(gray, 3, axis=2), alpha], axis=2)):
        payload = lossless._encode_predictive(pixels, 8, max_error, 1, transforms.GRAY, False, [])
        out = lossless.decode(payload)
        assert out.shape == pixels.shape
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
        assert np.abs(out.astype(int) - pixels).max() <= max_error
        if pixels.shape[2] == 4:
            assert np.array_equal(out[..., 3], pixels[..., 3])  # alpha is always exact
    one_plane = lossless._encode_predictive(gray, 8, max_error, 1, transforms.IDENTITY, False, [])
    three = lossless._encode_predictive(np.repeat(gray, 3, axis=2), 8, max_error, 1, transforms.GRAY, False, [])
    assert len(three) == len(one_plane) + 1  # the transform byte


def test_the_gray_transform_is_refused_where_it_does_not_belong():
    """The encoder codes it only for R = G = B; a payload older than version 12 cannot carry it."""
    colour = _smooth(20, 24, 3)
    with pytest.raises(ValueError, match="R, G and B are equal"):
        lossless._encode_predictive(colour, 8, 0, 1, transforms.GRAY, False, [])
    payload = lossless._encode_predictive(np.repeat(colour[..., :1], 3, axis=2), 8, 0, 1, transforms.GRAY, False, [])
    assert payload[0] == lossless.VERSION >= transforms.GRAY_VERSION
    with pytest.raises(ContainerError, match="colour transform 4 needs version 12"):
        lossless.decode(bytes([11]) + payload[1:])


def test_flat_gray_art_still_tries_the_palette_forms_after_prediction(monkeypatch):
    """Flat gray art repeats its neighbours: both families are encoded, the smaller kept."""
    levels = np.random.default_rng(3).integers(0, 256, (8, 8), dtype=np.uint8)
    art = np.kron(levels, np.ones((8, 8), np.uint8))[:, :, None]
    assert lossless._repeat_share(art) > lossless.GRAY_MATCH_SHARE
    raster_calls = _recording(monkeypatch, "_begin_raster")
    predictive_calls = _recording(monkeypatch, "_encode_predictive")
    payload = lossless.encode(art, 8, 0, 1)
    assert np.array_equal(lossless.decode(payload), art)
    assert raster_calls and predictive_calls
    assert lossless.describe(payload)["mode"] != "predictive"


def test_gray_tile_art_with_few_repeats_keeps_its_palette_form():
    """Low repeat share is not enough to skip the palette forms: their estimate must lose too."""
    art = _tiled(64, 64)[:, :, :1].copy()
    assert lossless._repeat_share(art) <= lossless.GRAY_MATCH_SHARE
    payload = lossless.encode(art, 8, 0, 1)
    assert np.array_equal(lossless.decode(payload), art)
    assert lossless.describe(payload)["mode"] == "palette"


@pytest.mark.parametrize("channels", [1, 3])
def test_a_near_lossless_gray_photo_is_predicted_first(monkeypatch, channels):
    """A photo-like gray image (few repeats) at ±N: prediction first, then only what could beat
    it: the exact palette forms are skipped by estimate, the merged colours' raster scan too."""
    photo = _smooth(120, 136, 1, seed=5)
    if channels == 3:
        photo = np.repeat(photo, 3, axis=2)
    assert lossless._repeat_share(photo) < lossless.REDUCE_SHARE
    raster_calls = _recording(monkeypatch, "_begin_raster")
    payload = lossless.encode(photo, 8, 4, 1)
    assert np.abs(lossless.decode(payload).astype(int) - photo).max() <= 4
    info = lossless.describe(payload)
    assert info["mode"] == "predictive" and info.get("transform", "") in ("", transforms.TRANSFORM_NAMES[transforms.GRAY])
    assert len(raster_calls) == 1  # the merged image's, which its estimate stops at once


def test_near_lossless_flat_gray_art_keeps_the_palette_first_order(monkeypatch):
    """At ±N the smallest payload wins whatever its PSNR, and on flat art a predicted payload can
    be smaller but far worse than the merged colours' (xkcd1526 at ±32: 30.7 against 40 dB): gray
    images that repeat their neighbours still try the palette forms first."""
    levels = np.random.default_rng(3).integers(0, 256, (8, 8), dtype=np.uint8)
    art = np.kron(levels, np.ones((8, 8), np.uint8))[:, :, None]
    assert lossless._repeat_share(art) >= lossless.REDUCE_SHARE
    palette_calls = _recording(monkeypatch, "_encode_palette")
    payload = lossless.encode(art, 8, 4, 1)
    assert np.abs(lossless.decode(payload).astype(int) - art).max() <= 4
    assert palette_calls and lossless.describe(payload)["mode"] != "predictive"


def _two_bands(h: int = 64, w: int = 96) -> np.ndarray:
    """Two flat colours 10 apart, split by a one-pixel anti-aliased edge of blended shades."""
    a, b = np.array([40, 30, 50]), np.array([50, 36, 60])
    pixels = np.empty((h, w, 3), dtype=np.uint8)
    pixels[:, : w // 2] = a
    pixels[:, w // 2 :] = b
    for y in range(h):  # one shade per row: rare colours
        t = (y % 7 + 1) / 8
        pixels[y, w // 2] = np.round(a * (1 - t) + b * t).astype(np.uint8)
    return pixels


def test_merging_rare_colours_keeps_the_flat_colours_exact() -> None:
    """encode_popular merges only colours of few pixels: the two flat colours, 10 apart, stay as
    they are where the plain merge at ±16 joins them; every sample stays within ±N."""
    from udic.lossless import transforms

    pixels = _two_bands()
    plain = transforms.reduce_colours(pixels, 16)
    assert len(np.unique(plain.reshape(-1, 3), axis=0)) == 1  # the plain merge joins the flat colours
    payload = lossless.encode_popular(pixels, 8, 16)
    decoded = lossless.decode(payload).reshape(pixels.shape)
    assert np.abs(decoded.astype(int) - pixels).max() <= 16
    assert lossless.describe(payload)["max_error"] == 16
    edge = np.zeros(pixels.shape[:2], dtype=bool)
    edge[:, pixels.shape[1] // 2] = True
    np.testing.assert_array_equal(decoded[~edge], pixels[~edge])  # flat colours exact
    assert len(np.unique(decoded.reshape(-1, 3), axis=0)) == 2  # the shades joined them
    assert len(payload) < len(lossless.encode(pixels))


def test_merging_rare_colours_declines_where_nothing_moves() -> None:
    """No rare colour near a popular one (or too many colours): None, nothing to offer."""
    pixels = _two_bands()
    pixels[:, pixels.shape[1] // 2] = [200, 0, 0]  # the edge: one colour, far from both
    assert lossless.encode_popular(pixels, 8, 16) is None
    assert lossless.encode_popular(_smooth(200, 200, 3), 8, 16) is None  # a photo-like image: too many colours
    gray_photo = _smooth(200, 200, 1)  # 256 levels at most, its tails rare, but no flat regions
    assert lossless.encode_popular(gray_photo, 8, 16) is None
    assert lossless.encode_popular(_two_bands(), 8, 0) is None


def test_bands_side_by_side_by_hand() -> None:
    """Version 13: K bands of ceil(H / K) rows set side by side, the last padded with the image's
    last row; the inverse keeps the image's rows."""
    plane = np.arange(5 * 2).reshape(5, 2)
    banded = raster.to_bands(plane, 2)
    assert banded.tolist() == [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 8, 9]]
    assert raster.band_shape(5, 2, 2) == banded.shape == (3, 4)
    np.testing.assert_array_equal(raster.from_bands(banded, 2, 5), plane)
    assert raster.to_bands(plane, 1) is plane
    rgb = np.arange(7 * 3 * 3).reshape(7, 3, 3)
    for bands in (1, 2, 3, 7):
        np.testing.assert_array_equal(raster.from_bands(raster.to_bands(rgb, bands), bands, 7), rgb)


@pytest.mark.parametrize("height", [512, 513])
@pytest.mark.parametrize("max_error", [0, 3])
def test_tall_palette_images_are_scanned_in_bands(height: int, max_error: int) -> None:
    """At effort 1 a palette raster image up to BANDS_MAX_WIDTH wide, with BANDS_MIN_ROWS a band,
    is scanned as two bands (odd heights padded): exact, or within ±N."""
    pixels = _banded(height, 40)
    payload = lossless.encode(pixels, 8, max_error, 1)
    info = lossless.describe(payload)
    assert info["mode"] == "palette raster" and info["bands"] == lossless.RASTER_BANDS == 2
    decoded = lossless.decode(payload)
    assert decoded.shape == pixels.shape
    assert np.abs(decoded.astype(int) - pixels).max() <= info["max_error"] <= max_error


def test_bands_are_left_out_where_they_do_not_pay() -> None:
    """Effort 2 (the smallest files), short images and wide ones keep one band."""
    assert lossless.raster_bands(512, 60, 2) == 1
    assert lossless.raster_bands(511, 60, 1) == 1
    assert lossless.raster_bands(600, lossless.BANDS_MAX_WIDTH + 1, 1) == 1
    assert lossless.raster_bands(512, lossless.BANDS_MAX_WIDTH, 1) == 2
    pixels = _banded(512, 40)
    assert lossless.describe(lossless.encode(pixels, 8, 0, 2))["bands"] == 1
    np.testing.assert_array_equal(lossless.decode(lossless.encode(pixels, 8, 0, 2)), pixels)


def _bands_at(payload: bytes) -> int:
    from udic.lossless.payload import Reader

    reader = Reader(payload)
    lossless._read_header(reader, None)
    return reader.pos


@pytest.mark.parametrize("bands, why", [(0, "0 bands is invalid"), (17, "17 bands is invalid"),
                                        (16, "16 bands is invalid for 12 rows")])
def test_a_forged_band_count_is_refused(bands: int, why: str) -> None:
    payload = _raster_payload(_glyphs(12, 40), [], 0, 0)
    at = _bands_at(payload)
    assert payload[at] == 1
    with pytest.raises(ContainerError, match=why):
        lossless.decode(payload[:at] + bytes([bands]) + payload[at + 1:])
    with pytest.raises(ContainerError, match=why):
        lossless.describe(payload[:at] + bytes([bands]) + payload[at + 1:])


def test_version_12_raster_payloads_have_no_band_count() -> None:
    """A version 12 payload is a version 13 one with one band, without the band byte."""
    pixels = _glyphs(30, 48)
    payload = _raster_payload(pixels, [], 0, 0)
    at = _bands_at(payload)
    older = bytes([12]) + payload[1:at] + payload[at + 1:]
    np.testing.assert_array_equal(lossless.decode(older), pixels)
    assert "bands" in lossless.describe(payload) and lossless.describe(older)["bands"] == 1
    with pytest.raises(ContainerError):
        lossless.decode(bytes([12]) + payload[1:])  # the band byte read as the palette size and on
