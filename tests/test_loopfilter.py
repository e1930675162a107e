"""The per-image loop filter (bitstream_spec.md §8): exact integer application, its section, the fit, the codec path."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import loaded, smooth_image
from udic import api
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
    assert len(bands) == 2  # about a million pixels, spread: the first and the last band
    bands = loopfilter.sample_bands(4000, 1000)
    assert bands[0][0] == 0 and bands[-1][1] == 4000
    assert len(bands) == 1_000_000 // (128 * 1000) and sum(b - a for a, b in bands) * 1000 <= 1_000_000


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


# ---- activity classes (format version 8) -----------------------------------------------------


def _class_filter(k: int, thresholds: tuple[int, ...], seed: int = 0, spread: int = 40) -> LoopFilter:
    base = _random_filter(k, 8, seed, spread)
    rng = np.random.default_rng(seed + 100)
    corrections = rng.integers(-spread, spread + 1, (len(thresholds), 3, loopfilter.CLASS_TAPS))
    return LoopFilter(k=k, frac_bits=8, taps=base.taps, gains=base.gains, bias=base.bias,
                      thresholds=thresholds, class_taps=corrections)


def _reference_activity(d: np.ndarray, y: int, x: int) -> int:
    """Spec §8's activity of one pixel in Python integers (pixels outside replicated)."""
    h, w, _ = d.shape

    def g(yy: int, xx: int) -> int:
        yy, xx = min(max(yy, 0), h - 1), min(max(xx, 0), w - 1)
        return int(d[yy, xx, 0]) + 2 * int(d[yy, xx, 1]) + int(d[yy, xx, 2])

    total = 0
    for qy in (y - 1, y, y + 1):
        for qx in (x - 1, x, x + 1):
            total += abs(4 * g(qy, qx) - g(qy - 1, qx) - g(qy + 1, qx) - g(qy, qx - 1) - g(qy, qx + 1))
    return total


def _reference_classes(d: np.ndarray, lf: LoopFilter, y: int, x: int) -> list[int]:
    """Spec §8 with activity classes for one pixel: the plain filter's sum plus the class's
    own-channel 3×3 correction, before the shift."""
    h, w, _ = d.shape
    cls = sum(1 for t in lf.thresholds if t <= _reference_activity(d, y, x))
    out = []
    plain = LoopFilter(k=lf.k, frac_bits=lf.frac_bits, taps=lf.taps, gains=lf.gains, bias=lf.bias)
    r = lf.k // 2
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]
    for c in range(3):
        acc = int(d[y, x, c]) << lf.frac_bits
        i = 0
        for j in range(3):
            for dy, dx in offsets:
                yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                acc += int(plain.taps[c, i]) * (int(d[yy, xx, j]) - int(d[y, x, j]))
                i += 1
        acc += sum(int(plain.gains[c, j]) * int(d[y, x, j]) for j in range(3)) + int(plain.bias[c])
        if cls:
            row = lf.class_taps[cls - 1, c]
            small = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
            for t, (dy, dx) in enumerate(small):
                yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                acc += int(row[t]) * (int(d[yy, xx, c]) - int(d[y, x, c]))
            acc += int(row[loopfilter.CLASS_TAPS - 1])
        acc += 1 << (lf.frac_bits - 1)
        out.append(min(max(acc >> lf.frac_bits, 0), 255))
    return out


@pytest.mark.parametrize("k", loopfilter.ALLOWED_TAPS)
def test_classes_follow_the_spec_formula(k: int) -> None:
    d = np.random.default_rng(7).integers(0, 256, (10, 13, 3), dtype=np.uint8)
    acts = sorted({_reference_activity(d, y, x) for y in range(10) for x in range(13)})
    lf = _class_filter(k, (acts[len(acts) // 4], acts[len(acts) // 2], acts[3 * len(acts) // 4]), seed=k)
    out = loopfilter.apply(d, lf)
    for y in range(10):
        for x in range(13):
            assert out[y, x].tolist() == _reference_classes(d, lf, y, x), (y, x)


def test_classes_round_trip_through_the_section() -> None:
    lf = _class_filter(5, (3, 400, 9000, 65535), seed=3, spread=5000)
    payload = loopfilter.encode(lf)
    assert payload[0] == 5 | loopfilter.CLASS_FLAG and payload[8] == 5
    back = loopfilter.decode(payload)
    assert back.thresholds == lf.thresholds and np.array_equal(back.class_taps, lf.class_taps)
    assert np.array_equal(back.taps, lf.taps) and np.array_equal(back.bias, lf.bias)


def _with_classes(count: int, steps: list[int]) -> bytes:
    """A class filter section's head with a hand-made class count and threshold steps."""
    out = bytearray([3 | loopfilter.CLASS_FLAG, 8, 1, 0, 1, 0, 1, 0, count])
    for step in steps:
        out += ctr.write_varint(step)
    return bytes(out) + b"\x01\x00"


@pytest.mark.parametrize("payload, why", [
    (_with_classes(1, []), "1 classes"),
    (_with_classes(9, [1] * 8), "9 classes"),
    (_with_classes(3, [5, 0]), "thresholds"),
    (_with_classes(2, [70000]), "thresholds"),
    (_with_classes(3, [40000, 30000]), "thresholds"),
    (_with_classes(2, [5]), "loop filter"),  # the coefficient streams are missing
])
def test_corrupt_class_sections_are_refused(payload: bytes, why: str) -> None:
    with pytest.raises(ContainerError, match=why):
        loopfilter.decode(payload)


def test_classes_are_refused_in_files_before_version_8() -> None:
    payload = loopfilter.encode(_class_filter(3, (100,)))
    with pytest.raises(ContainerError, match="corrupt loop filter"):
        loopfilter.decode(payload, classes_allowed=False)
    plain = loopfilter.encode(_random_filter(3, 8))
    assert loopfilter.decode(plain, classes_allowed=False).thresholds == ()


def test_band_errors_with_classes_equal_the_whole_image_filter() -> None:
    rng = np.random.default_rng(8)
    decoded = rng.integers(0, 256, (300, 20, 3)).astype(np.uint8)
    original = rng.integers(0, 256, (300, 20, 3)).astype(np.uint8)
    lf = _class_filter(1, (2000, 5000), seed=4)  # halo 2 although k = 1
    assert lf.halo == loopfilter.ACTIVITY_RADIUS
    full = loopfilter.apply(decoded, lf).astype(np.float64) - original
    for bands in ([(128, 256)], [(0, 128), (256, 300)]):
        sse, _ = loopfilter.squared_error(original, decoded, lf, bands)
        rows = np.concatenate([np.arange(a, b) for a, b in bands])
        assert sse == pytest.approx(float(np.sum(full[rows] ** 2)), rel=1e-12)


@pytest.mark.parametrize("shape", [(300, 20), (5, 41), (40, 3)])
def test_errors_of_several_filters_in_one_pass_equal_each_filter_applied(shape: tuple[int, int]) -> None:
    """The encoder compares its shapes and class splits in one pass: exactly the errors of
    applying each filter (k 1 / 3 / 5, F 8 / 10 / 14, with and without classes)."""
    rng = np.random.default_rng(shape[1])
    decoded = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
    original = np.clip(decoded.astype(int) + rng.integers(-9, 10, decoded.shape), 0, 255).astype(np.uint8)
    filters = [_random_filter(1, 8, 1), _random_filter(3, 10, 2), _random_filter(5, 14, 3, spread=400),
               _class_filter(3, (3000,), 4), _class_filter(5, (1000, 5000), 5), _class_filter(1, (2000,), 6)]
    h = shape[0]
    for bands in (loopfilter.sample_bands(*shape), [(0, min(h, 7))], [(h // 2, h)]):
        for chosen in (filters, filters[:1], filters[1:3], filters[3:]):
            got = loopfilter.squared_errors(original, decoded, chosen, bands)
            assert got == [loopfilter.squared_error(original, decoded, lf, bands) for lf in chosen]
    assert loopfilter.squared_errors(original, decoded, [], [(0, h)]) == []


def test_merged_class_statistics_equal_a_direct_pass() -> None:
    rng = np.random.default_rng(9)
    d = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    o = np.clip(d.astype(int) + rng.integers(-5, 6, d.shape), 0, 255).astype(np.uint8)
    fine = loopfilter.activity_thresholds(d, 8)
    assert len(fine) == 7 and list(fine) == sorted(set(fine))
    plain = loopfilter.normal_equations(o, d, 5)
    stats = loopfilter.class_normal_equations(o, d, 3, fine, plain)
    for keep in [(3,), (1, 3, 5)]:
        merged = loopfilter.merge_classes(stats, keep)
        direct = loopfilter.class_normal_equations(o, d, 3, tuple(fine[i] for i in keep))
        assert merged.thresholds == direct.thresholds
        np.testing.assert_allclose(merged.gram, direct.gram, rtol=1e-12, atol=1e-6)
        np.testing.assert_allclose(merged.cross, direct.cross, rtol=1e-12, atol=1e-6)


def test_classes_fit_what_one_filter_cannot() -> None:
    """Busy areas darkened, flat ones brightened: one filter must compromise, two classes need not."""
    rng = np.random.default_rng(10)
    d = np.full((48, 48, 3), 120, np.uint8)
    d[:, 24:] = rng.integers(0, 256, (48, 24, 3))  # busy right half
    o = d.astype(int)
    o[:, :22] += 6
    o[:, 26:] -= 6
    o = np.clip(o, 0, 255).astype(np.uint8)
    plain = loopfilter.fit(loopfilter.normal_equations(o, d, 1), 1, 8)
    split = loopfilter.fit_classes(loopfilter.class_normal_equations(o, d, 1, (1,)), 8)
    bands = loopfilter.sample_bands(48, 48)
    assert split.classes == 2
    sse_split, _ = loopfilter.squared_error(o, d, split, bands)
    sse_plain, _ = loopfilter.squared_error(o, d, plain, bands)
    assert sse_split < 0.5 * sse_plain


def test_codec_writes_version_8_for_a_class_filter(tiny_codec: Codec) -> None:
    image = loaded(smooth_image(40, 56))
    plain = tiny_codec.encode(image, 2.0)
    lf = _class_filter(3, (50, 400), seed=11, spread=20)
    enc = tiny_codec.encode(image, 2.0, loop_filter=lf)
    assert ctr.parse(enc.data).header.version == ctr.FILTER_CLASSES_VERSION
    assert ctr.parse(plain.data).header.version < ctr.FILTER_CLASSES_VERSION
    assert api.info(enc.data).loop_filter_classes == 3 and api.info(plain.data).loop_filter_classes == 0
    base = np.asarray(tiny_codec.decode(plain.data).image)
    assert np.array_equal(np.asarray(tiny_codec.decode(enc.data).image), loopfilter.apply(base, lf))
