"""The per-image loop filter (bitstream_spec.md §8): exact integer application, its section, the fit, the codec path."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import loaded, smooth_image
from udic import container as ctr
from udic import loopfilter
from udic.codec import Codec
from udic.errors import ContainerError
from udic.loopfilter import LoopFilter


def _random_filter(k: int, frac_bits: int, seed: int = 0, spread: int = 40) -> LoopFilter:
    rng = np.random.default_rng(seed)
    return LoopFilter(k=k, frac_bits=frac_bits,
                      taps=rng.integers(-spread, spread + 1, (3, 3 * (k * k - 1))),
                      gains=rng.integers(-spread, spread + 1, (3, 3)),
                      bias=rng.integers(-50 * spread, 50 * spread + 1, 3))


def _reference(d: np.ndarray, lf: LoopFilter, y: int, x: int) -> list[int]:
    """Spec §8 for one pixel, in Python integers (edge pixels replicated)."""
    h, w, _ = d.shape
    r = lf.k // 2
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]
    out = []
    for c in range(3):
        acc = int(d[y, x, c]) << lf.frac_bits
        i = 0
        for j in range(3):
            for dy, dx in offsets:
                yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                acc += int(lf.taps[c, i]) * (int(d[yy, xx, j]) - int(d[y, x, j]))
                i += 1
        acc += sum(int(lf.gains[c, j]) * int(d[y, x, j]) for j in range(3)) + int(lf.bias[c])
        acc += 1 << (lf.frac_bits - 1)
        out.append(min(max(acc >> lf.frac_bits, 0), 255))
    return out


@pytest.mark.parametrize("k", loopfilter.ALLOWED_TAPS)
def test_apply_follows_the_spec_formula(k: int) -> None:
    d = np.random.default_rng(3).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    lf = _random_filter(k, 8)
    out = loopfilter.apply(d, lf)
    for y, x in [(0, 0), (0, 10), (8, 0), (8, 10), (4, 5), (1, 2)]:
        assert out[y, x].tolist() == _reference(d, lf, y, x)


def test_identity_filter_changes_nothing() -> None:
    d = smooth_image(20, 24)
    lf = LoopFilter(k=3, frac_bits=8, taps=np.zeros((3, 24), np.int64), gains=np.zeros((3, 3), np.int64),
                    bias=np.zeros(3, np.int64))
    assert lf.is_identity()
    assert np.array_equal(loopfilter.apply(d, lf), d)


@pytest.mark.parametrize("k", loopfilter.ALLOWED_TAPS)
def test_section_round_trip(k: int) -> None:
    lf = _random_filter(k, 10, seed=k, spread=3000)  # large values exercise the escape codes
    back = loopfilter.decode(loopfilter.encode(lf))
    assert (back.k, back.frac_bits) == (k, 10)
    for a, b in ((lf.taps, back.taps), (lf.gains, back.gains), (lf.bias, back.bias)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("payload, why", [
    (b"", "loop filter"),
    (bytes([4, 8, 1, 0, 1, 0, 1, 0]), "k 4"),
    (bytes([3, 20, 1, 0, 1, 0, 1, 0]), "F 20"),
    (bytes([3, 8, 0, 0, 1, 0, 1, 0]), "scale"),
    (bytes([3, 8, 1, 0, 1, 0, 1, 0, 9]), "loop filter"),
])
def test_corrupt_sections_are_refused(payload: bytes, why: str) -> None:
    with pytest.raises(ContainerError, match=why):
        loopfilter.decode(payload)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(ContainerError, match="trailing"):
        loopfilter.decode(loopfilter.encode(_random_filter(3, 8)) + b"\x00")


def test_fit_recovers_a_level_shift_and_channel_gain_exactly() -> None:
    decoded = np.random.default_rng(5).integers(40, 200, (30, 40, 3)).astype(np.uint8)
    original = decoded.astype(np.int64)
    original[..., 0] += 7  # a level shift in red
    original[..., 2] = (original[..., 2] * 5) // 4  # blue a quarter brighter
    original = original.astype(np.uint8)
    lf = loopfilter.fit(loopfilter.normal_equations(original, decoded), k=1, frac_bits=8, ridge=0.0)
    assert lf.bias[0] == 7 * 256 and lf.gains[2, 2] == 64
    assert np.abs(loopfilter.apply(decoded, lf).astype(int) - original.astype(int)).max() <= 1


def test_smaller_filters_are_sub_problems_of_the_big_one() -> None:
    rng = np.random.default_rng(2)
    decoded = rng.integers(0, 256, (24, 24, 3)).astype(np.uint8)
    original = np.clip(decoded.astype(int) + rng.integers(-3, 4, decoded.shape), 0, 255).astype(np.uint8)
    big = loopfilter.normal_equations(original, decoded, k=5)
    small = loopfilter.normal_equations(original, decoded, k=3)
    a, b = loopfilter.fit(big, 3, 10), loopfilter.fit(small, 3, 10)
    assert np.array_equal(a.taps, b.taps) and np.array_equal(a.gains, b.gains) and np.array_equal(a.bias, b.bias)


def test_codec_sends_and_applies_the_filter(tiny_codec: Codec) -> None:
    image = loaded(smooth_image(40, 56))
    plain = tiny_codec.encode(image, 2.0)
    lf = _random_filter(3, 8, seed=9, spread=20)
    enc = tiny_codec.encode(image, 2.0, loop_filter=lf)
    cont = ctr.parse(enc.data)
    assert cont.header.flags & ctr.Flags.LOOP_FILTER and cont.header.version >= 3
    base = np.asarray(tiny_codec.decode(plain.data).image)
    assert np.array_equal(np.asarray(tiny_codec.decode(enc.data).image), loopfilter.apply(base, lf))


def test_band_errors_equal_the_whole_image_filter() -> None:
    rng = np.random.default_rng(4)
    decoded = rng.integers(0, 256, (300, 20, 3)).astype(np.uint8)
    original = rng.integers(0, 256, (300, 20, 3)).astype(np.uint8)
    lf = _random_filter(5, 8, seed=1)
    full = loopfilter.apply(decoded, lf).astype(np.float64) - original
    for bands in ([(128, 256)], [(0, 128), (256, 300)], loopfilter.sample_bands(300, 20)):
        sse, pixels = loopfilter.squared_error(original, decoded, lf, bands)
        rows = np.concatenate([np.arange(a, b) for a, b in bands])
        assert sse == pytest.approx(float(np.sum(full[rows] ** 2)), rel=1e-12)
        assert pixels == len(rows) * 20
    assert loopfilter.sample_bands(300, 20) == [(0, 128), (128, 256), (256, 300)]


def test_huge_images_are_fitted_on_a_spread_sample() -> None:
    bands = loopfilter.sample_bands(8000, 6000)
    assert bands[0][0] == 0 and bands[-1][1] == 8000
    assert sum(b - a for a, b in bands) * 6000 <= 4_000_000 + 128 * 6000


@pytest.mark.parametrize("k", loopfilter.ALLOWED_TAPS)
def test_column_pieces_change_neither_output_nor_fit(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide images are filtered and fitted in column pieces (bounded memory): same result."""
    rng = np.random.default_rng(5)
    d = rng.integers(0, 256, (19, 37, 3), dtype=np.uint8)
    o = np.clip(d.astype(int) + rng.integers(-6, 7, d.shape), 0, 255).astype(np.uint8)
    lf = _random_filter(k, 10, seed=2)
    whole_out, whole_fit = loopfilter.apply(d, lf), loopfilter.normal_equations(o, d, k)
    monkeypatch.setattr(loopfilter, "_MAX_COLS", 5)
    assert np.array_equal(loopfilter.apply(d, lf), whole_out)
    pieces = loopfilter.normal_equations(o, d, k)
    assert pieces.pixels == whole_fit.pixels
    np.testing.assert_allclose(pieces.gram, whole_fit.gram, rtol=1e-12)
    np.testing.assert_allclose(pieces.cross, whole_fit.cross, rtol=1e-12, atol=1e-6)
