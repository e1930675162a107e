"""Reduced-resolution coding (spec §12): the integer upsampler (``resample``), the resample section,
files whose network codes a 2×-downsampled image, and the encoder's choice of them (``reduced``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from udic import api, reduced, resample
from udic import container as ctr
from udic import sections
from udic.errors import ContainerError
from udic.ratecontrol import RateTarget

from conftest import loaded, png_bytes, psnr, run, smooth_image


def gradient(h: int, w: int) -> np.ndarray:
    """Smooth, noiseless: what reduced resolution is for."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [60 + 120 * xx / (w - 1), 50 + 100 * yy / (h - 1), 128 + 50 * np.sin((xx + 2 * yy) / 60)]
    return np.clip(np.rint(np.stack(planes, -1)), 0, 255).astype(np.uint8)


# ---- the upsampler ------------------------------------------------------------------------------


def test_upsample_matches_the_spec_formula_by_hand():
    # Row [0, 128]: out[0] = -9·128 → (-1152·128 + 8192) >> 14 = -9 → 0; out[1] = 26·128 → 26
    # (3328·128 = 425984, +8192 >> 14 = 26); out[2] = 102·128 → 102; out[3] = 137·128 → 137.
    low = np.array([[[0], [128]]], dtype=np.uint8)
    out = resample.upsample(low, 2, 4)
    assert out.shape == (2, 4, 1)
    assert out[:, :, 0].tolist() == [[0, 26, 102, 137], [0, 26, 102, 137]]


def test_upsample_keeps_a_constant_image_and_crops_odd_sizes():
    low = np.full((5, 7, 3), 173, np.uint8)
    out = resample.upsample(low, 9, 13)
    assert out.shape == (9, 13, 3) and np.all(out == 173)
    with pytest.raises(ValueError):
        resample.upsample(low, 11, 13)


def test_upsample_is_separable_rows_first():
    rng = np.random.default_rng(3)
    low = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    out = resample.upsample(low, 12, 10)
    # The same arithmetic written out for one output sample (row 2i+1, column 2j) by hand.
    even, odd = np.array(resample.TAPS_EVEN), np.array(resample.TAPS_ODD)
    i, j, c = 2, 3, 1
    rows = np.clip(np.arange(i - 1, i + 3), 0, 5)
    cols = np.clip(np.arange(j - 2, j + 2), 0, 4)
    wide = (low[rows][:, cols, c].astype(np.int64) * even).sum(axis=1)
    value = int((wide * odd).sum())
    assert out[2 * i + 1, 2 * j, c] == min(max((value + 8192) >> 14, 0), 255)


def test_coded_size_rounds_up():
    assert resample.coded_size(432, 768) == (216, 384)
    assert resample.coded_size(9, 13) == (5, 7)


def test_downsample_then_upsample_keeps_a_smooth_image():
    rgb = gradient(64, 96)
    low = resample.downsample(rgb)
    assert low.shape == (32, 48, 3)
    assert psnr(resample.upsample(low, 64, 96), rgb) > 45


# ---- the section and the container ------------------------------------------------------------


def test_resample_section_round_trip_and_refusals():
    context = sections.DecodeContext(10, 10)
    payload = sections.resample.encode(2)
    assert payload == b"\x02\x00" and sections.resample.decode(payload, context) == 2
    assert sections.resample.encode(None) is None
    assert sections.resample.describe(payload) == {"bytes": 2, "factor": 2, "filter": "cubic"}
    for bad, message in ((b"\x03\x00", "factor"), (b"\x02\x01", "filter"), (b"\x02", "2 bytes"),
                         (b"\x02\x00\x00", "2 bytes")):
        with pytest.raises(ContainerError, match=message):
            sections.resample.decode(bad, context)


@pytest.fixture(scope="module")
def reduced_file(tiny_codec):
    """A smooth 80×120 RGBA image coded at reduced resolution: (file, image, low image's file)."""
    rgb = gradient(80, 120)
    alpha = np.tile(np.arange(120, dtype=np.uint8) * 2, (80, 1))
    image = loaded(np.dstack([rgb, alpha]))
    low = reduced.reduced_image(image)
    low_file = api._encode_learned(tiny_codec, low, 1.0, 0, None, 0, None, None)
    return reduced.encode_reduced(tiny_codec, image, low, 1.0, 0, None, 0, None), image, low_file


def test_a_reduced_file_decodes_to_the_upsampled_low_image(tiny_codec, reduced_file):
    enc, image, low_file = reduced_file
    header = ctr.parse(enc.data).header
    assert (header.width, header.height, header.version) == (120, 80, ctr.RESAMPLE_VERSION)
    assert header.flags & ctr.Flags.RESAMPLE and header.flags & ctr.Flags.ALPHA
    assert header.latent_crc == ctr.parse(low_file.data).header.latent_crc
    decoded = tiny_codec.decode(enc.data).image
    low = np.asarray(tiny_codec.decode(low_file.data).image.convert("RGB"))
    assert decoded.size == (120, 80) and decoded.mode == "RGBA"
    rgba = np.asarray(decoded)
    assert np.array_equal(rgba[..., :3], resample.upsample(low, 80, 120))
    assert np.array_equal(rgba[..., 3], image.alpha)  # alpha is the output's, exact
    assert enc.bpp == pytest.approx(8 * len(enc.data) / (80 * 120))


def test_a_reduced_file_decodes_the_same_twice_and_its_damage_is_refused(tiny_codec, reduced_file):
    enc = reduced_file[0]
    first = np.asarray(tiny_codec.decode(enc.data).image)
    assert np.array_equal(first, np.asarray(tiny_codec.decode(enc.data).image))
    cont = ctr.parse(enc.data)
    bad = dict(cont.sections)
    bad[ctr.Section.RESAMPLE] = b"\x04\x00"
    data = ctr.write(ctr.Container(header=cont.header, sections=bad))
    with pytest.raises(ContainerError, match="resample factor"):
        tiny_codec.decode(data)


def test_info_names_the_coded_size(runner, tmp_path, reduced_file):
    path = tmp_path / "r.udic"
    path.write_bytes(reduced_file[0].data)
    fi = api.info(reduced_file[0].data)
    assert fi.coded_size == "60x40" and fi.width == 120
    out = run(runner, "info", str(path))
    assert out.exit_code == 0 and "reduced resolution (coded at 60x40, upsampled x2)" in out.output
    record = json.loads(run(runner, "info", "--json", str(path)).output)
    assert record["coded_size"] == "60x40" and record["version"] == 7


def test_the_cli_decodes_a_reduced_file(runner, tmp_path, reduced_file):
    src = tmp_path / "r.udic"
    src.write_bytes(reduced_file[0].data)
    out = run(runner, "decode", str(src), "-o", str(tmp_path / "r.png"), "--quiet")
    assert out.exit_code == 0, out.output
    from PIL import Image

    assert Image.open(tmp_path / "r.png").size == (120, 80)


# ---- the encoder's choice ----------------------------------------------------------------------


@pytest.fixture
def learned_only(monkeypatch):
    """The pixel coder out of the way (it wins on noiseless gradients): the choice between
    full and reduced resolution alone."""
    from udic import modes

    monkeypatch.setattr(modes, "choose_smaller", lambda image, lossy, effort, quality, on_step=None: lossy)
    monkeypatch.setattr(modes, "best_within_bytes", lambda image, budget, lossy, effort, on_step=None: lossy)


def test_the_choice_keeps_only_a_file_that_is_no_larger_and_no_worse(tiny_codec, learned_only, monkeypatch):
    image = loaded(gradient(192, 256))
    for q in (0.0, 1.0):
        full = api.encode_with(tiny_codec, image, q, effort=1, reduce=False)
        full_db = psnr(np.asarray(tiny_codec.decode(full.data).image.convert("RGB")), image.rgb)
        chosen = api.encode_with(tiny_codec, image, q, effort=1)
        chosen_db = psnr(np.asarray(tiny_codec.decode(chosen.data).image.convert("RGB")), image.rgb)
        assert len(chosen.data) <= len(full.data) and chosen_db >= full_db - 1e-9
    # On this smooth image the tiny model's reduced file wins at the lowest rate, once its adapted
    # encode is made (the tiny model's effort-0 probe is no guide to it: probes always pass here).
    monkeypatch.setattr(reduced, "PROBE_DB", 100.0)
    monkeypatch.setattr(reduced, "PROBE_SIZE", 100.0)
    half = api.encode_with(tiny_codec, image, 0.0, effort=1)
    assert ctr.parse(half.data).header.flags & ctr.Flags.RESAMPLE


def test_fine_detail_is_not_worth_a_reduced_encode():
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: the reduction loses them
    low = resample.downsample(stripes)
    assert not resample.worth_trying(stripes, low, 20.0)
    smooth = gradient(64, 64)
    assert resample.worth_trying(smooth, resample.downsample(smooth), 30.0)


def test_small_images_and_failed_ceilings_cost_no_reduced_encode(tiny_codec, monkeypatch):
    calls = []
    monkeypatch.setattr(reduced, "encode_reduced", lambda *a, **k: calls.append(a))
    api.encode_with(tiny_codec, loaded(gradient(100, 300)), 1.0, effort=1)  # under 128 on a side
    monkeypatch.setattr(resample, "worth_trying", lambda *a: False)
    api.encode_with(tiny_codec, loaded(gradient(192, 256)), 1.0, effort=1)
    assert calls == []


def test_effort_0_and_reduce_false_stay_at_full_resolution(tiny_codec, learned_only):
    image = loaded(gradient(192, 256))
    for kwargs in ({"effort": 0}, {"effort": 1, "reduce": False}):
        enc = api.encode_with(tiny_codec, image, 0.0, **kwargs)
        assert not ctr.parse(enc.data).header.flags & ctr.Flags.RESAMPLE


def test_lossy_only_still_codes_at_reduced_resolution(tiny_codec, monkeypatch):
    """--lossy-only (choose_mode=False) rules out pixel-coded files, not reduced learned ones."""
    monkeypatch.setattr(reduced, "PROBE_DB", 100.0)
    monkeypatch.setattr(reduced, "PROBE_SIZE", 100.0)
    image = loaded(gradient(192, 256))
    enc = api.encode_with(tiny_codec, image, 0.0, effort=1, choose_mode=False)
    header = ctr.parse(enc.data).header
    assert header.mode == "learned" and header.flags & ctr.Flags.RESAMPLE


def test_a_bpp_target_below_the_lowest_rate_is_met_at_reduced_resolution(tiny_codec, learned_only):
    image = loaded(gradient(192, 256))
    lowest = api.encode_with(tiny_codec, image, 0.0, effort=1, reduce=False).bpp
    target = RateTarget("bpp", lowest / 2.5)
    enc = api.encode_with(tiny_codec, image, 3.0, effort=1, target=target)
    assert ctr.parse(enc.data).header.flags & ctr.Flags.RESAMPLE
    assert enc.bpp <= target.value * 1.03
    assert png_bytes(np.asarray(tiny_codec.decode(enc.data).image))  # decodes


def test_a_gray_image_at_reduced_resolution_decodes_gray(tiny_codec):
    gray = gradient(40, 64)[..., 0]
    image = loaded(gray)
    enc = reduced.encode_reduced(tiny_codec, image, reduced.reduced_image(image), 2.0, 0, None, 0, None)
    decoded = tiny_codec.decode(enc.data).image
    assert decoded.mode == "L" and decoded.size == (64, 40)
    assert psnr(np.asarray(decoded), gray) > 20


def test_a_probe_far_from_the_full_file_costs_no_adapted_encode(tiny_codec, monkeypatch):
    efforts = []
    real = reduced.encode_reduced

    def spy(codec, image, low, q, effort, *rest):
        efforts.append(effort)
        return real(codec, image, low, q, effort, *rest)

    monkeypatch.setattr(reduced, "encode_reduced", spy)
    monkeypatch.setattr(reduced, "PROBE_DB", -100.0)  # no probe comes close enough
    monkeypatch.setattr(reduced, "PROBE_SIZE", 100.0)
    enc = api.encode_with(tiny_codec, loaded(gradient(192, 256)), 0.0, effort=1, choose_mode=False)
    assert efforts == [0] * len(reduced.STEPS)
    assert not ctr.parse(enc.data).header.flags & ctr.Flags.RESAMPLE


def test_a_reduced_file_carries_no_psnr_of_its_low_image(tiny_codec):
    """The adapted encode of the half-size image knows its PSNR against that image, not the file's
    against the source: a reduced file's PSNR is the decoded full-size one, or measured later."""
    image = loaded(gradient(192, 256))
    low = reduced.reduced_image(image)
    enc = reduced.encode_reduced(tiny_codec, image, low, 0.0, 1, None, 0, None)
    assert enc.psnr is None or enc.psnr == api._learned_psnr(tiny_codec, image, enc.data)
    assert api.encoded_psnr(image, enc, tiny_codec) == api._learned_psnr(tiny_codec, image, enc.data)


def test_a_bpp_target_above_the_top_rate_keeps_the_full_resolution_file(tiny_codec, learned_only):
    """The full search's top file fits such a target: it is measured, not treated as over the
    budget (which let any reduced file that fitted win, whatever its PSNR)."""
    image = loaded(gradient(192, 256))
    top = api.encode_with(tiny_codec, image, tiny_codec.max_quality, effort=1, reduce=False)
    enc = api.encode_with(tiny_codec, image, 3.0, effort=1, target=RateTarget("bpp", top.bpp * 3))
    assert not ctr.parse(enc.data).header.flags & ctr.Flags.RESAMPLE
