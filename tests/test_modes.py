"""The mode choice (spec §11, issue 14): the quality scale past the network's top rate,
pixel-coded answers to lossy requests that they dominate, and PSNR targets above the
network's reach."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from udic import api, modes
from udic import container as ctr
from udic.imageio import load_image
from udic.ratecontrol import RateTarget

from conftest import flat_art, loaded, png_bytes, run, smooth_image


def test_the_pixel_ladder_continues_the_quality_scale():
    assert modes.max_quality(5.0) == 9.0
    assert modes.pixel_max_error(5.0, 5.0) is None
    assert modes.pixel_max_error(3.2, 5.0) is None
    assert [modes.pixel_max_error(q, 5.0) for q in (5.01, 6, 6.5, 7, 8, 9)] == [4, 4, 2, 2, 1, 0]


class _Sized:
    def __init__(self, size: int) -> None:
        self.data = bytes(size)


def _fake_ladder(monkeypatch, sizes: dict[int, int]) -> list[int]:
    """Pixel candidates of the given sizes per ±N, recording which were encoded."""
    made: list[int] = []

    def fake(image, max_error, effort):
        made.append(max_error)
        return modes.Candidate(_Sized(sizes[max_error]), 40.0)

    monkeypatch.setattr(modes, "_pixel_candidate", fake)
    monkeypatch.setattr(modes, "_popular_candidate", lambda image, max_error, effort: None)  # (not flat art)
    return made


SCREENSHOT = {32: 83, 24: 97, 16: 117, 12: 135, 10: 147, 8: 160, 6: 175, 5: 183, 4: 195, 3: 200, 2: 205, 1: 208}


def test_the_near_lossless_ladder_runs_from_loose_to_tight_in_small_steps():
    steps = modes.NEAR_LOSSLESS_CANDIDATES
    assert list(steps) == sorted(steps, reverse=True) and steps[-1] == 1 and len(set(steps)) == len(steps)
    assert all((1 + a) / (1 + b) <= 1.5 for a, b in zip(steps, steps[1:]))


def test_tolerance_search_interpolates_to_the_tightest_fitting_step(monkeypatch):
    # The 3.7 MP screenshot of session 18 (the steps between the doublings interpolated): the
    # budget falls between ±12 and ±16.
    made = _fake_ladder(monkeypatch, SCREENSHOT)
    assert modes._tolerance_search(None, 1, 118, 210)[0] == 16
    # The log-size line from the exact file (210) to ±32 (83) meets 118 at ±8; ±8 is too big, so
    # the line from ±8 (160) to ±32 puts it at ±16, which fits; ±12 (135) does not.
    assert made == [32, 8, 16, 12]
    made = _fake_ladder(monkeypatch, SCREENSHOT)
    assert modes._tolerance_search(None, 1, 82, 210) is None and made == [32]


def test_the_mode_choice_reports_its_pixel_encodes(monkeypatch):
    """Each pixel-coded file the choice makes is a progress step (seconds each on a screenshot)."""
    made = _fake_ladder(monkeypatch, {0: 210, **SCREENSHOT})
    steps = []
    lossy = modes.Candidate(_Sized(82), psnr=30.0)  # nothing pixel-coded fits: the lossy file stays
    chosen = modes.choose_smaller(None, lossy, 1, 3.0, lambda *step: steps.append(step))
    assert made == [0, 32] and chosen.result is lossy.result
    total = modes.PLANNED_ENCODES
    assert [s[:3] for s in steps] == [("pixels", k, total) for k in range(3)]


def test_tolerance_search_agrees_with_trying_every_step(monkeypatch):
    rng = np.random.default_rng(7)
    for _ in range(200):
        exact = int(rng.integers(50, 1000))
        falls = np.sort(rng.integers(1, exact + 1, len(modes.NEAR_LOSSLESS_CANDIDATES)))[::-1]
        if rng.random() < 0.2:
            falls[:] = falls[0]  # a ladder whose sizes do not fall
        sizes = dict(zip(sorted(modes.NEAR_LOSSLESS_CANDIDATES), falls.tolist()))
        budget = int(rng.integers(1, exact + 1))
        made = _fake_ladder(monkeypatch, sizes)
        found = modes._tolerance_search(None, 1, budget, exact)
        fitting = [n for n in sorted(sizes) if sizes[n] <= budget]
        assert (found[0] if found else None) == (fitting[0] if fitting else None)
        assert len(made) <= len(sizes) and len(set(made)) == len(made)


@pytest.mark.parametrize("above,flag", [(4, ["--lossless"]), (2, ["--max-error", "2"])])
def test_a_quality_on_the_pixel_ladder_writes_the_same_file_as_its_flag(runner, tmp_path, above, flag):
    from udic import hub

    quality = f"{hub.max_quality(None) + above:g}"  # steps above the default model's top rate
    (tmp_path / "in.png").write_bytes(png_bytes(smooth_image(30, 34)))
    for name, args in (("q", ["-q", quality]), ("f", flag)):
        res = run(runner, "encode", str(tmp_path / "in.png"), "-o", str(tmp_path / f"{name}.udic"), *args)
        assert res.exit_code == 0, res.output
    assert (tmp_path / "q.udic").read_bytes() == (tmp_path / "f.udic").read_bytes()


def test_exact_samples_keep_gray_and_alpha_channels():
    rgba = np.dstack([smooth_image(10, 12), np.full((10, 12), 7, np.uint8)])
    samples, depth = modes.exact_samples(loaded(rgba))
    assert depth == 8 and samples.shape == (10, 12, 4) and np.array_equal(samples, rgba)
    gray = smooth_image(10, 12, channels=1)
    samples, _ = modes.exact_samples(loaded(gray))
    assert samples.shape == (10, 12, 1) and np.array_equal(samples[..., 0], gray)


def test_a_quality_above_the_top_rate_is_pixel_coded_without_a_model(tiny_codec):
    image = loaded(smooth_image(32, 40))
    top = tiny_codec.max_quality
    result = api.encode_with(tiny_codec, image, top + 4, effort=0)
    assert ctr.parse(result.data).header.mode == "pixels"
    assert np.array_equal(np.asarray(api.decode(result.data).image), image.rgb)
    near = api.encode_with(tiny_codec, image, top + 1, effort=0)
    decoded = np.asarray(api.decode(near.data).image).astype(int)
    assert np.abs(decoded - image.rgb).max() <= 4


def test_a_lossy_request_is_answered_by_a_smaller_exact_file(tiny_codec):
    """On flat art the lossless file is smaller than the learned one: it is chosen."""
    image = loaded(flat_art())
    learned = api.encode_with(tiny_codec, image, tiny_codec.max_quality, effort=1, choose_mode=False)
    chosen = api.encode_with(tiny_codec, image, tiny_codec.max_quality, effort=1)
    exact = api.encode_pixels(image, 0)
    assert len(exact.data) < len(learned.data)
    assert ctr.parse(chosen.data).header.mode == "pixels"
    assert len(chosen.data) <= len(learned.data)
    assert np.array_equal(np.asarray(api.decode(chosen.data).image), image.rgb)
    note = api.info(chosen.data).mode_note
    # A small file says only what was asked: the full account would be over NOTE_SHARE of it.
    assert note is not None
    assert note.startswith("lossless: no larger than the learned file") or (
        note == f"-q {tiny_codec.max_quality:g}: no larger, no worse" and len(chosen.data) * modes.NOTE_SHARE < 60)


def test_without_the_mode_choice_the_learned_file_stays(tiny_codec):
    image = loaded(flat_art())
    result = api.encode_with(tiny_codec, image, tiny_codec.max_quality, effort=1, choose_mode=False)
    assert ctr.parse(result.data).header.mode == "learned"


def test_choose_smaller_keeps_the_lossy_file_when_pixels_cost_more():
    image = loaded(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8))

    class Tiny:
        data = b"x" * 10  # a 10-byte "lossy" file: nothing pixel-coded is smaller

    lossy = modes.Candidate(Tiny(), psnr=20.0)
    assert modes.choose_smaller(image, lossy, effort=1, quality=3).result is lossy.result
    assert modes.choose_smaller(image, lossy, effort=0, quality=3).result is lossy.result


def test_a_psnr_target_above_the_network_is_met_by_the_pixel_coder(tiny_codec):
    from udic.ratecontrol import RateTarget

    image = loaded(smooth_image(32, 40))
    result = api.encode_with(tiny_codec, image, 3.0, effort=1, target=RateTarget("psnr", 47.0))
    assert ctr.parse(result.data).header.mode == "pixels"
    decoded = np.asarray(api.decode(result.data).image)
    mse = np.mean((decoded.astype(float) - image.rgb) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) >= 47.0


@pytest.fixture(scope="module")
def finer_codec(tmp_path_factory):
    """A stand-in for the high-fidelity model: the tiny model with 48 DCT atoms instead of 12
    (on smooth_image(32, 40): top rate 31.1 dB, where the tiny model's is 27.7 dB)."""
    from udic import modelfile
    from udic.codec import codec_for_file
    from udic.testing import build_tiny_model

    path = tmp_path_factory.mktemp("finer") / "finer.safetensors"
    modelfile.save(build_tiny_model(0, M=48), path)
    return codec_for_file(path)


def test_a_psnr_target_beyond_the_top_rate_is_met_by_the_high_fidelity_model(tiny_codec, finer_codec):
    image = loaded(smooth_image(32, 40))
    result = api.encode_with(tiny_codec, image, 3.0, effort=0, target=RateTarget("psnr", 30.5),
                             fidelity=lambda: finer_codec)
    header = ctr.parse(result.data).header
    assert header.mode != "pixels" and header.model_id == finer_codec.model_id
    decoded = np.asarray(finer_codec.decode(result.data).image)
    assert 10 * np.log10(255**2 / np.mean((decoded.astype(float) - image.rgb) ** 2)) >= 30.5 - 0.1
    assert any("high-fidelity model" in n and "30.5" in n for n in result.notices)
    # without it the pixel coder meets the target, as before
    alone = api.encode_with(tiny_codec, image, 3.0, effort=0, target=RateTarget("psnr", 30.5))
    assert ctr.parse(alone.data).header.mode == "pixels"


def test_from_effort_1_the_high_fidelity_file_competes_with_the_pixel_coder(tiny_codec, finer_codec):
    """The high-fidelity file is the learned candidate of the mode choice: here it meets 30.5 dB
    in fewer bytes than the pixel coder, which answers without it."""
    image = loaded(smooth_image(32, 40))
    result = api.encode_with(tiny_codec, image, 3.0, effort=1, target=RateTarget("psnr", 30.5),
                             fidelity=lambda: finer_codec)
    alone = api.encode_with(tiny_codec, image, 3.0, effort=1, target=RateTarget("psnr", 30.5))
    assert ctr.parse(result.data).header.model_id == finer_codec.model_id
    assert ctr.parse(alone.data).header.mode == "pixels" and len(result.data) < len(alone.data)
    decoded = np.asarray(finer_codec.decode(result.data).image)
    assert 10 * np.log10(255**2 / np.mean((decoded.astype(float) - image.rgb) ** 2)) >= 30.5 - 0.1


def test_the_high_fidelity_model_is_not_loaded_for_a_target_the_model_meets(tiny_codec):
    image = loaded(smooth_image(32, 40))

    def never():
        raise AssertionError("loaded the high-fidelity model")

    result = api.encode_with(tiny_codec, image, 3.0, effort=1, target=RateTarget("psnr", 26.0), fidelity=never)
    assert ctr.parse(result.data).header.model_id == tiny_codec.model_id


def test_a_size_target_beyond_the_top_rate_takes_the_high_fidelity_model_only_if_it_is_better(tiny_codec,
                                                                                            finer_codec):
    image = loaded(smooth_image(32, 40))
    budget_bpp = 8 * 560 / (32 * 40)  # about the finer model's top file; the tiny model tops out at ~420 B
    result = api.encode_with(tiny_codec, image, 3.0, effort=0, target=RateTarget("bpp", budget_bpp),
                             fidelity=lambda: finer_codec, choose_mode=False)
    assert ctr.parse(result.data).header.model_id == finer_codec.model_id
    assert len(result.data) <= 560 * 1.05
    # a "high-fidelity" model that is no better keeps the default's file
    same = api.encode_with(tiny_codec, image, 3.0, effort=0, target=RateTarget("bpp", budget_bpp),
                           fidelity=lambda: tiny_codec, choose_mode=False)
    assert ctr.parse(same.data).header.model_id == tiny_codec.model_id


def test_a_near_lossless_file_gives_way_to_a_smaller_no_worse_high_fidelity_file(tiny_codec, finer_codec):
    image = loaded(smooth_image(32, 40))
    loose = api.encode_pixels(image, 24, 1)  # 472 B at 29.1 dB: the finer model does 29.4 dB in 383 B
    chosen = api.fidelity_for_pixels(loose, lambda: finer_codec, image, 7.0, 1)
    assert ctr.parse(chosen.data).header.model_id == finer_codec.model_id
    assert len(chosen.data) < len(loose.data)
    decoded = np.asarray(finer_codec.decode(chosen.data).image)
    assert 10 * np.log10(255**2 / np.mean((decoded.astype(float) - image.rgb) ** 2)) >= loose.psnr
    assert "no worse" in chosen.notices[-1] and "±24" in chosen.notices[-1]
    # where the model is larger (±32: 371 B) or cannot reach the PSNR (±4: 40 dB), the pixels stay
    for step in (32, 4):
        pixels = api.encode_pixels(image, step, 1)
        assert api.fidelity_for_pixels(pixels, lambda: finer_codec, image, 7.0, 1) is pixels


def _psnr_of(codec, image, data: bytes) -> float:
    decoded = np.asarray(codec.decode(data).image).astype(float)
    return 10 * np.log10(255**2 / np.mean((decoded - image.rgb) ** 2))


def test_q_between_the_top_rate_and_near_lossless_is_a_file_between_them(tiny_codec, finer_codec):
    """-q top + f on a photo: the high-fidelity file at the PSNR a fraction f of the way from the
    top rate's file to the ±4 file that -q top + 1 writes (~40 dB)."""
    image = loaded(smooth_image(32, 40))
    top = tiny_codec.max_quality
    low = _psnr_of(tiny_codec, image, api.encode_with(tiny_codec, image, top, effort=1, choose_mode=False).data)
    near = api.encode_pixels(image, modes.ladder_error(image, 4), 1)
    assert low < 30.2 and near.psnr > 38  # the finer model reaches ~31.1 dB
    got = {}
    for aim in (30.3, 30.8):  # fractions whose PSNR the finer model can reach
        fraction = (aim - low) / (near.psnr - low)
        result = api.encode_with(tiny_codec, image, top + fraction, effort=1, fidelity=lambda: finer_codec)
        assert ctr.parse(result.data).header.model_id == finer_codec.model_id
        got[aim] = _psnr_of(finer_codec, image, result.data)
        assert aim - 0.1 <= got[aim] < near.psnr and len(result.data) < len(near.data)
        assert any("of the way from the top rate" in n for n in result.notices)
    assert got[30.3] < got[30.8]
    # halfway (~35 dB) is beyond the finer model's top: the ±4 file, as -q top + 1 writes
    assert api.encode_with(tiny_codec, image, top + 0.5, effort=1, fidelity=lambda: finer_codec).data == near.data
    # and without the high-fidelity model, any fraction is the ±4 file
    assert api.encode_with(tiny_codec, image, top + 0.05, effort=1).data == near.data


def test_near_the_top_rate_a_smaller_high_fidelity_file_replaces_the_default_one(tiny_codec, finer_codec):
    """The default's top rates saturate (the tiny model: ~30.0 dB from -q 4 to 5, 488-516 B); the
    finer model's file at no lower PSNR is smaller, so from one step under the top it answers."""
    image = loaded(smooth_image(32, 40))
    top = tiny_codec.max_quality
    for q in (top - 0.5, top):
        plain = api.encode_with(tiny_codec, image, q, effort=1)
        result = api.encode_with(tiny_codec, image, q, effort=1, fidelity=lambda: finer_codec)
        assert ctr.parse(result.data).header.model_id == finer_codec.model_id
        assert len(result.data) < len(plain.data)
        assert _psnr_of(finer_codec, image, result.data) >= _psnr_of(tiny_codec, image, plain.data)
        assert "smaller than the default model's" in result.notices[-1]

    def never():
        raise AssertionError("loaded the high-fidelity model")

    api.encode_with(tiny_codec, image, top - 1.5, effort=1, fidelity=never)  # further down: not tried
    api.encode_with(tiny_codec, image, top, effort=0, fidelity=never)  # effort 0: the plain request
    # a PSNR target the default meets near its top: met in fewer bytes, with no notice about ranges
    plain = api.encode_with(tiny_codec, image, 3.0, effort=1, target=RateTarget("psnr", 29.0))
    result = api.encode_with(tiny_codec, image, 3.0, effort=1, target=RateTarget("psnr", 29.0),
                             fidelity=lambda: finer_codec)
    assert ctr.parse(result.data).header.model_id == finer_codec.model_id and len(result.data) < len(plain.data)
    assert _psnr_of(finer_codec, image, result.data) >= 29.0
    assert not any("what this model reaches" in n for n in result.notices)


def test_under_the_top_rate_the_high_fidelity_model_is_tried_only_on_heavy_files(tiny_codec, finer_codec,
                                                                                 monkeypatch):
    """One step under the top the default saturates only where its file is heavy (Kodak -q 5: no
    win under 0.95 bpp); from half a step under the top it is always tried."""
    image = loaded(smooth_image(32, 40))
    top = tiny_codec.max_quality

    def never():
        raise AssertionError("loaded the high-fidelity model")

    plain = api.encode_with(tiny_codec, image, top - 1, effort=1)
    bpp = 8 * len(plain.data) / (32 * 40)
    monkeypatch.setattr(api, "FIDELITY_BELOW_TOP_MIN_BPP", bpp + 0.01)  # this file is just too light
    assert api.encode_with(tiny_codec, image, top - 1, effort=1, fidelity=never).data == plain.data
    result = api.encode_with(tiny_codec, image, top - 0.5, effort=1, fidelity=lambda: finer_codec)
    assert ctr.parse(result.data).header.model_id == finer_codec.model_id  # half a step under: always tried
    # a PSNR target met under the top rate (29 dB: the finer model's file wins it when tried) follows the rule too
    monkeypatch.setattr(api, "FIDELITY_BELOW_TOP_MIN_BPP", 1e9)
    monkeypatch.setattr(api, "FIDELITY_ALWAYS_FROM_TOP", 0.0)
    api.encode_with(tiny_codec, image, 3.0, effort=1, target=RateTarget("psnr", 29.0), fidelity=never)
    monkeypatch.setattr(api, "FIDELITY_ALWAYS_FROM_TOP", 0.5)
    monkeypatch.setattr(api, "FIDELITY_BELOW_TOP_MIN_BPP", bpp - 0.01)  # heavy enough
    result = api.encode_with(tiny_codec, image, top - 1, effort=1, fidelity=lambda: finer_codec)
    assert ctr.parse(result.data).header.model_id == finer_codec.model_id


def test_the_high_fidelity_model_is_not_tried_where_it_cannot_win(tiny_codec):
    image = loaded(smooth_image(32, 40))
    pixels = api.encode_pixels(image, 24, 1)

    def never():
        raise AssertionError("loaded the high-fidelity model")

    assert not api.fidelity_may_beat(pixels, image, effort=0)  # effort 0: the plain request
    assert not api.fidelity_may_beat(api.encode_pixels(image, 0, 1), image, effort=1)  # lossless
    flat = loaded(flat_art(32, 40))
    assert not api.fidelity_may_beat(api.encode_pixels(flat, 4, 1), flat, effort=1)  # a small file: flat art
    gray = loaded(smooth_image(32, 40, channels=1))
    assert not api.fidelity_may_beat(api.encode_pixels(gray, 24, 1), gray, effort=1)
    # nor for flat art's targets beyond the top rate: its pixel-coded files always won there
    api.encode_with(tiny_codec, flat, 3.0, effort=1, target=RateTarget("psnr", 47.0), fidelity=never)
    # -q above the top rate at effort 0, or with a named model, is the near-lossless file as before
    q = tiny_codec.max_quality + 1
    for effort, fidelity in ((0, never), (1, None)):
        got = api.encode_with(tiny_codec, image, q, effort=effort, fidelity=fidelity)
        assert got.data == api.encode_pixels(image, modes.ladder_error(image, 4), effort).data


def test_the_high_fidelity_model_is_tried_only_when_no_model_is_named():
    from udic.modelchoice import HIGH_FIDELITY_MODEL, fidelity_model_for

    assert fidelity_model_for(None) == HIGH_FIDELITY_MODEL
    assert fidelity_model_for("udic-hp-syn26r7-loram") is None


@pytest.mark.parametrize("metric,value", [("psnr", 47.0), ("bpp", 12.0)])
def test_a_target_beyond_the_network_continues_into_the_pixel_coder_at_effort_0(tiny_codec, metric, value):
    """As -q above the top rate does: effort 0 skips the mode choice, not the user's request."""
    from udic.ratecontrol import RateTarget

    image = loaded(smooth_image(32, 40))
    result = api.encode_with(tiny_codec, image, 3.0, effort=0, target=RateTarget(metric, value))
    assert ctr.parse(result.data).header.mode == "pixels"
    assert result.notices and "lossless" in result.notices[-1]  # lossless or near-lossless: why this file
    decoded = np.asarray(api.decode(result.data).image).astype(float)
    if metric == "psnr":
        mse = np.mean((decoded - image.rgb) ** 2)
        assert mse == 0 or 10 * np.log10(255**2 / mse) >= value
    else:
        assert result.bpp <= value
    kept = api.encode_with(tiny_codec, image, 3.0, effort=0, target=RateTarget(metric, value), choose_mode=False)
    assert ctr.parse(kept.data).header.mode == "learned"
    assert "above what this model reaches" in kept.notices[-1]


def test_sixteen_bit_png_round_trips_exactly_through_the_cli(runner, tmp_path):
    from udic import png16

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:20, 0:24]
    src = np.stack([xx * 2700, yy * 3100, (xx * yy * 97) % 65536], axis=2).astype(np.uint16)
    src += rng.integers(0, 8, src.shape, dtype=np.uint16)
    (tmp_path / "in.png").write_bytes(png16.write(src))
    assert load_image(tmp_path / "in.png").wide is not None
    res = run(runner, "encode", str(tmp_path / "in.png"), "-o", str(tmp_path / "a.udic"), "--lossless", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[-1])["mode"] == "lossless"
    res = run(runner, "decode", str(tmp_path / "a.udic"), "-o", str(tmp_path / "out.png"))
    assert res.exit_code == 0, res.output
    back, info = png16.read((tmp_path / "out.png").read_bytes())
    assert info["bit_depth"] == 16 and np.array_equal(back, src)


def _ramp16(tmp_path):
    """A 16-bit RGB ramp (it codes losslessly in a few hundred bytes, so the mode choice weighs
    near-lossless files against the learned one) and its samples."""
    from udic import png16

    yy, xx = np.mgrid[0:32, 0:40]
    src = np.stack([xx * 1600, yy * 2000, (xx + yy) * 900], axis=2).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    path.write_bytes(png16.write(src))
    return path, src


def test_sixteen_bit_png_above_the_top_rate_takes_the_ladder_at_its_own_depth(runner, tmp_path):
    """-q above the network's top rate writes the ladder's near-lossless file: ±4 in 8-bit units,
    ±1,024 on 16-bit samples (spec, "Qualities above the network"), decoded at 16 bits.  It had
    been refused as "--max-error 1024 is out of range 0…255", an option the user never gave."""
    from udic import png16

    path, src = _ramp16(tmp_path)
    res = run(runner, "encode", str(path), "-o", str(tmp_path / "a.udic"), "-q", "7", "--effort", "0", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[-1])["mode"] in ("near-lossless", "lossless")
    res = run(runner, "decode", str(tmp_path / "a.udic"), "-o", str(tmp_path / "out.png"))
    assert res.exit_code == 0, res.output
    back, info = png16.read((tmp_path / "out.png").read_bytes())
    assert info["bit_depth"] == 16 and np.abs(back.astype(np.int64) - src).max() <= 4 << 8


def test_a_sixteen_bit_source_is_said_to_be_reduced_only_when_its_file_is(runner, tmp_path):
    """The CLI's notes are the file's: a pixel-coded file keeps the 16 bits, so "reduced 16-bit to
    8 bits" is not said of it (it had been, for every 16-bit input, from the loaded image's notes),
    and the note on why that file was written is said (the notes after the image's had been
    counted from the image's list, so the first was dropped when the 16-bit one was not there)."""
    path, _ = _ramp16(tmp_path)
    res = run(runner, "encode", str(path), "-o", str(tmp_path / "a.udic"), "--lossless")
    assert res.exit_code == 0, res.output
    assert "16-bit" not in res.output
    res = run(runner, "encode", str(path), "-o", str(tmp_path / "b.udic"), "--target-psnr", "60", "--json")
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout.splitlines()[-1])
    assert record["mode"] in ("near-lossless", "lossless") and "16-bit" not in res.output
    assert record["notices"] and all(f"note: {n}" in res.output for n in record["notices"])
    res = run(runner, "encode", str(path), "-o", str(tmp_path / "c.udic"), "-q", "3", "--lossy-only")
    assert res.exit_code == 0, res.output
    assert "note: reduced 16-bit to 8 bits per channel" in res.output  # the learned file is 8-bit


def test_the_mode_choice_weighs_near_lossless_files_of_a_sixteen_bit_source(tiny_codec, tmp_path):
    """From effort 1 a learned request tries near-lossless files when the lossless one is close in
    size; on 16-bit samples their tolerances are the ladder's scaled by 256, which the pixel coder
    had refused (ValueError: max_error must be in 0..255), so such an encode failed outright."""
    path, src = _ramp16(tmp_path)
    image = load_image(path)
    assert image.wide is not None
    result = api.encode_with(tiny_codec, image, 2.0, effort=1)
    header = ctr.parse(result.data).header
    if header.mode == "pixels":
        decoded = api.decode(result.data)
        assert decoded.bit_depth == 16
        assert np.abs(np.asarray(decoded.samples, dtype=np.int64) - src).max() <= result.max_error
    target = api.encode_with(tiny_codec, image, 2.0, effort=1, target=RateTarget("psnr", 45.0))
    assert ctr.parse(target.data).header.mode == "pixels"  # beyond the tiny network
    if target.max_error:  # the note names the file's tolerance, in 16-bit units as info does
        assert f"near-lossless ±{target.max_error}:" in target.notices[-1] and target.max_error % 256 == 0


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P"])
def test_lossless_cli_round_trips_every_pixel_layout(runner, tmp_path, mode):
    rgba = np.dstack([smooth_image(18, 22), (np.arange(18 * 22).reshape(18, 22) % 251).astype(np.uint8)])
    image = Image.fromarray(rgba, "RGBA")
    image = image.convert(mode) if mode != "P" else image.convert("RGB").quantize(7)
    (tmp_path / "in.png").write_bytes(png_bytes(image))
    assert run(runner, "encode", str(tmp_path / "in.png"), "-o", str(tmp_path / "a.udic"), "--lossless").exit_code == 0
    assert run(runner, "decode", str(tmp_path / "a.udic"), "-o", str(tmp_path / "o.png")).exit_code == 0
    want = np.asarray(image.convert("RGB") if mode == "P" else image)
    got = np.asarray(Image.open(tmp_path / "o.png"))
    assert np.array_equal(got, want)


def test_max_error_cli_bounds_every_colour_sample(runner, tmp_path):
    src = smooth_image(30, 34)
    (tmp_path / "in.png").write_bytes(png_bytes(src))
    res = run(runner, "encode", str(tmp_path / "in.png"), "-o", str(tmp_path / "a.udic"), "--max-error", "3")
    assert res.exit_code == 0, res.output
    run(runner, "decode", str(tmp_path / "a.udic"), "-o", str(tmp_path / "o.png"))
    got = np.asarray(Image.open(tmp_path / "o.png")).astype(int)
    assert np.abs(got - src).max() <= 3
    res = run(runner, "info", str(tmp_path / "a.udic"), "--json")
    record = json.loads(res.stdout)
    assert (record["mode"], record["max_error"]) == ("near-lossless", 3)


@pytest.mark.parametrize("args, message", [
    (["--lossless", "-q", "3"], "cannot be combined"),
    (["--lossless", "--max-error", "2"], "cannot be combined"),
    (["--lossless", "--lossy-only"], "contradicts"),
    (["--max-error", "300"], "300"),
])
def test_contradictory_mode_options_are_refused(runner, tmp_path, args, message):
    (tmp_path / "in.png").write_bytes(png_bytes(smooth_image(8, 8)))
    res = run(runner, "encode", str(tmp_path / "in.png"), "-o", str(tmp_path / "a.udic"), *args)
    assert res.exit_code != 0 and message in res.stderr
    assert not (tmp_path / "a.udic").exists()


def _fake_graded_ladder(monkeypatch, files: dict[int, tuple[int, float]]) -> list[int]:
    """Pixel candidates of the given (size, PSNR) per ±N, recording which were encoded."""
    made: list[int] = []

    def fake(image, max_error, effort):
        made.append(max_error)
        return modes.Candidate(_Sized(files[max_error][0]), files[max_error][1])

    monkeypatch.setattr(modes, "_pixel_candidate", fake)
    monkeypatch.setattr(modes, "_popular_candidate", lambda image, max_error, effort: None)  # (not flat art)
    monkeypatch.setattr(modes, "_noted", lambda cand, note, brief=None: cand)  # (fake files take no note)
    return made


# A comic strip's ladder (comicgen_strip_12, session 25): the network's smallest file is
# 5,267 B at 23.8 dB.  (Measured on the doublings and ±48; the steps between them interpolated.)
STRIP = {0: (7576, math.inf), 1: (6656, 68.1), 2: (6272, 63.9), 3: (6000, 61.2), 4: (5775, 59.0),
         5: (5600, 57.0), 6: (5480, 55.5), 8: (5243, 53.1), 10: (5100, 51.5), 12: (4950, 50.0),
         16: (4718, 47.7), 20: (4600, 46.1), 24: (4480, 44.5), 32: (4276, 41.5), 40: (4015, 40.1),
         48: (3753, 38.8), 64: (3455, 36.9)}


def test_the_smallest_rate_takes_the_smallest_file_that_is_no_worse(monkeypatch):
    made = _fake_graded_ladder(monkeypatch, STRIP)
    lossy = modes.Candidate(_Sized(5267), psnr=23.8)
    chosen = modes.choose_smaller(None, lossy, 1, 0.0)
    assert chosen.size <= 5267 and chosen.psnr == 36.9 and made == [0, 64]
    # From -q 1 the most faithful file that fits: ±8 here.
    made = _fake_graded_ladder(monkeypatch, STRIP)
    assert modes.choose_smaller(None, lossy, 1, 1.0).psnr == 53.1


def test_the_smallest_rate_bisects_for_the_loosest_step_that_reaches_the_learned_psnr(monkeypatch):
    made = _fake_graded_ladder(monkeypatch, STRIP)
    lossy = modes.Candidate(_Sized(5267), psnr=40.0)  # ±64 and ±48 are worse: ±32 is the answer
    chosen = modes.choose_smaller(None, lossy, 1, 0.5)
    assert chosen.psnr == 41.5 and made[:2] == [0, 64] and len(made) <= 5
    # Nothing no worse fits: the learned file stays.
    made = _fake_graded_ladder(monkeypatch, STRIP)
    lossy = modes.Candidate(_Sized(4000), psnr=45.0)
    assert modes.choose_smaller(None, lossy, 1, 0.0).result is lossy.result


def test_the_smallest_rate_skips_a_looser_step_that_is_no_smaller(monkeypatch):
    # Sizes need not fall with the step (comicgen_strip_00: ±64 is larger than ±48, and worse):
    # of the steps the search made, the smallest that reaches the floor is kept.
    files = {**STRIP, 32: (3400, 41.5), 48: (3500, 38.8), 64: (3600, 36.9)}
    made = _fake_graded_ladder(monkeypatch, files)
    lossy = modes.Candidate(_Sized(5267), psnr=37.5)
    assert modes.choose_smaller(None, lossy, 1, 0.0).psnr == 41.5 and {32, 48, 64} <= set(made)


def test_the_smallest_rate_on_flat_art_is_pixel_coded_and_no_worse(tiny_codec):
    image = loaded(flat_art())
    learned = api.encode_with(tiny_codec, image, 0.0, effort=1, choose_mode=False)
    learned_db = api._learned_psnr(tiny_codec, image, learned.data)
    chosen = api.encode_with(tiny_codec, image, 0.0, effort=1)
    assert len(chosen.data) <= len(learned.data)
    decoded = np.asarray(api.decode(chosen.data).image).astype(float)
    mse = np.mean((decoded - image.rgb) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) >= learned_db
    assert ctr.parse(chosen.data).header.mode == "pixels"  # four flat colours: far smaller than the network's
    note = api.info(chosen.data).mode_note
    assert note is not None and "no larger" in note  # (a small file keeps the brief "-q 0: no larger, no worse")


def test_the_smallest_rate_stops_when_the_loosest_step_does_not_fit(monkeypatch):
    made = _fake_graded_ladder(monkeypatch, STRIP)
    lossy = modes.Candidate(_Sized(3400), psnr=20.0)  # below ±64's 3,455 B: nothing fits
    assert modes.choose_smaller(None, lossy, 1, 0.0).result is lossy.result and made == [0, 64]


def test_uniform_error_psnr_is_the_even_spread_floor():
    # ±N spread evenly over its 2N + 1 values: MSE = N(N + 1) / 3 per sample.
    assert modes.uniform_error_psnr(1) == pytest.approx(10 * math.log10(255**2 / (2 / 3)))
    assert modes.uniform_error_psnr(5) == pytest.approx(10 * math.log10(255**2 / 10))
    assert modes.uniform_error_psnr(0) == math.inf


def test_a_psnr_target_takes_the_loosest_step_that_reaches_it(monkeypatch):
    made = _fake_graded_ladder(monkeypatch, STRIP)
    # 42 dB: the even-error floor puts the first probe at ±3 (42.1 dB); it reaches, so the search
    # looks only looser and ends at ±24 (44.5 dB; ±32 is 41.5 dB).
    chosen = modes.meet_psnr(None, 42.0, 1, 35.0)
    assert chosen.psnr == 44.5 and made[0] == 3 and 0 not in made and len(made) <= 5
    # A target no step reaches is met losslessly.
    made = _fake_graded_ladder(monkeypatch, STRIP)
    assert modes.meet_psnr(None, 70.0, 1, 35.0).psnr == math.inf and made.count(0) == 1  # encoded once


def test_a_psnr_target_looks_tighter_when_the_first_probe_falls_short(monkeypatch):
    files = {n: (size, db - 20) for n, (size, db) in STRIP.items()}  # a ladder 20 dB worse
    made = _fake_graded_ladder(monkeypatch, files)
    chosen = modes.meet_psnr(None, 42.0, 1, 35.0)
    # ±3 (41.2 dB) falls short: ±1 (48.1 dB) reaches, and ±2 (43.9 dB) is the loosest that does.
    assert chosen.psnr == pytest.approx(43.9) and made == [3, 1, 2]


def test_a_psnr_target_keeps_the_smallest_file_that_reaches_it(monkeypatch):
    # Merged colours can decode closer than a tighter predictive file (pdv_digital-background-2:
    # ±5 at 49.6 dB, ±4 at 44.6 dB): of the files made, the smallest that reaches is kept.
    files = {**STRIP, 24: (4000, 41.0), 16: (4100, 40.0), 12: (4300, 43.0)}
    made = _fake_graded_ladder(monkeypatch, files)
    chosen = modes.meet_psnr(None, 42.0, 1, 35.0)
    assert chosen.psnr >= 42.0 and chosen.size == min(files[n][0] for n in made if files[n][1] >= 42.0)


def test_a_psnr_target_the_network_meets_takes_a_smaller_pixel_file(monkeypatch):
    made = _fake_graded_ladder(monkeypatch, STRIP)
    lossy = modes.Candidate(_Sized(5000), psnr=42.3)  # the network meets 42 dB in 5,000 B
    chosen = modes.smaller_meeting_psnr(None, 42.0, lossy, 1)
    assert chosen.size == 4480 and chosen.psnr == 44.5 and made[0] == 0  # ±24: 44.5 dB in 4,480 B
    # Learned files far below the lossless one (photos): one exact encode, then the learned file.
    made = _fake_graded_ladder(monkeypatch, STRIP)
    lossy = modes.Candidate(_Sized(300), psnr=42.3)
    assert modes.smaller_meeting_psnr(None, 42.0, lossy, 1).result is lossy.result and made == [0]
    # No pixel file that reaches the target is smaller: the learned file stays.
    made = _fake_graded_ladder(monkeypatch, STRIP)
    lossy = modes.Candidate(_Sized(4000), psnr=42.3)
    assert modes.smaller_meeting_psnr(None, 42.0, lossy, 1).result is lossy.result
    # Effort 0 is the plain learned encode.
    made = _fake_graded_ladder(monkeypatch, STRIP)
    assert modes.smaller_meeting_psnr(None, 42.0, lossy, 0).result is lossy.result and made == []


def test_a_psnr_target_on_flat_art_is_met_by_the_smaller_pixel_file(tiny_codec):
    image = loaded(flat_art())
    learned = api.encode_with(tiny_codec, image, 3.0, effort=1, choose_mode=False)
    aim = api._learned_psnr(tiny_codec, image, learned.data) - 1.0
    chosen = api.encode_with(tiny_codec, image, 3.0, effort=1, target=RateTarget("psnr", aim))
    decoded = np.asarray(api.decode(chosen.data).image).astype(float)
    mse = np.mean((decoded - image.rgb) ** 2)
    assert mse == 0 or 10 * np.log10(255**2 / mse) >= aim
    assert ctr.parse(chosen.data).header.mode == "pixels"  # four flat colours
    account = r"(in fewer bytes|smaller) than the learned file"
    assert re.search(account, chosen.notices[-1])
    # The file keeps the account, or on a small file (over NOTE_SHARE of it) only the request.
    note = api.info(chosen.data).mode_note
    assert re.search(account, note) or (note == f"--target-psnr {aim:g}"
                                        and len(chosen.notices[-1]) > modes.NOTE_SHARE * len(chosen.data))
    plain = api.encode_with(tiny_codec, image, 3.0, effort=0, target=RateTarget("psnr", aim))
    assert ctr.parse(plain.data).header.mode != "pixels" or len(chosen.data) <= len(plain.data)


def test_a_psnr_target_on_a_photo_stops_after_one_near_lossless_probe(monkeypatch):
    # kodim05 at 30 dB (session 26): the learned file is 39,480 B; the lossless one is 12x that
    # (within the reach), but the first probe, ±12, is 2.7x: no near-lossless file can win.
    photo = {0: (483318, math.inf), 12: (108514, 32.17), 16: (88851, 30.02), 24: (63337, 26.99),
             32: (47852, 24.77)}
    made = _fake_graded_ladder(monkeypatch, photo)
    lossy = modes.Candidate(_Sized(39480), psnr=30.05)
    assert modes.smaller_meeting_psnr(None, 30.0, lossy, 1).result is lossy.result and made == [0, 12]


def test_a_sweep_covers_the_models_rates_and_the_near_lossless_steps(tiny_cache):
    top = int(api.get_codec(tiny_cache.id).max_quality)
    assert api.default_qualities(tiny_cache.id) == [float(q) for q in range(top + 4)]


def _fake_popular(monkeypatch, files: dict[int, tuple[int, float] | None]) -> list[int]:
    """Rare-colour merges of the given (size, PSNR) per ±N (None: does not apply), recorded."""
    made: list[int] = []

    def fake(image, max_error, effort):
        made.append(max_error)
        got = files[max_error]
        return None if got is None else modes.Candidate(_Sized(got[0]), got[1])

    monkeypatch.setattr(modes, "_popular_candidate", fake)
    return made


def test_a_psnr_target_takes_a_smaller_rare_colour_merge(monkeypatch):
    """Above the network's reach the loosest rare-colour merge that reaches the target wins when
    it is smaller than the ladder's file; tighter merges are not tried once one reaches."""
    _fake_graded_ladder(monkeypatch, STRIP)
    made = _fake_popular(monkeypatch, {64: (3000, 30.0), 32: (3100, 45.0), 16: (3300, 50.0)})
    chosen = modes.meet_psnr(None, 42.0, 1, 35.0)
    assert (chosen.size, chosen.psnr) == (3100, 45.0) and made == [64, 32]
    # Larger than the ladder's ±24 file (44.5 dB): the ladder's file stays, no tighter merge made.
    _fake_graded_ladder(monkeypatch, STRIP)
    made = _fake_popular(monkeypatch, {64: (9000, 45.0), 32: (9500, 46.0), 16: (9900, 50.0)})
    assert modes.meet_psnr(None, 42.0, 1, 35.0).psnr == 44.5 and made == [64]
    # Not flat art (too many colours): the ladder's file.
    _fake_graded_ladder(monkeypatch, STRIP)
    made = _fake_popular(monkeypatch, {64: None, 32: None, 16: None})
    assert modes.meet_psnr(None, 42.0, 1, 35.0).psnr == 44.5 and made == [64]


def test_a_met_psnr_target_takes_a_rare_colour_merge_under_the_learned_file(monkeypatch):
    """When the network meets the target, a rare-colour merge that also meets it in fewer bytes
    than the learned file and the ladder's files (±24: 4,480 B at 44.5 dB) replaces them."""
    _fake_graded_ladder(monkeypatch, STRIP)
    _fake_popular(monkeypatch, {64: (4000, 40.0), 32: (4100, 43.0), 16: (4300, 50.0)})
    lossy = modes.Candidate(_Sized(5000), psnr=42.1)
    chosen = modes.smaller_meeting_psnr(None, 42.0, lossy, 1)
    assert (chosen.size, chosen.psnr) == (4100, 43.0)
    _fake_graded_ladder(monkeypatch, STRIP)
    _fake_popular(monkeypatch, {64: (4000, 40.0), 32: (4100, 41.0), 16: (4300, 41.5)})
    assert modes.smaller_meeting_psnr(None, 42.0, lossy, 1).size == 4480  # none reaches 42 dB: the ladder's ±24


def test_a_rare_colour_merge_is_a_real_file_within_its_bound():
    """_popular_candidate writes a pixel-coded .udic file that decodes within ±N, with its
    PSNR known; where no colour moves it offers nothing."""
    from udic.imageio import LoadedImage

    a, b = np.array([40, 30, 50]), np.array([50, 36, 60])
    pixels = np.empty((48, 64, 3), dtype=np.uint8)
    pixels[:, :32], pixels[:, 32:] = a, b
    for y in range(48):
        pixels[y, 32] = np.round(a + (b - a) * ((y % 5 + 1) / 6)).astype(np.uint8)
    image = LoadedImage(rgb=pixels, mode="RGB", alpha=None, icc=None)
    cand = modes._popular_candidate(image, 16, 1)
    decoded = np.asarray(api.decode(cand.result.data).image)
    assert np.abs(decoded.astype(int) - pixels).max() <= 16 and math.isfinite(cand.psnr)
    mse = np.mean((decoded.astype(float) - pixels) ** 2)
    assert cand.psnr == pytest.approx(10 * math.log10(255**2 / mse), abs=0.01)
    flat = LoadedImage(rgb=np.full((16, 16, 3), 7, dtype=np.uint8), mode="RGB", alpha=None, icc=None)
    assert modes._popular_candidate(flat, 16, 1) is None


def test_a_note_over_its_share_of_a_small_file_keeps_only_the_request(monkeypatch):
    """_noted writes the whole account where it is at most NOTE_SHARE of the file, else the
    brief; the result carries the whole account either way (the terminal prints it)."""
    import numpy as np

    from udic import pixelcodec

    enc = pixelcodec.encode_file(np.zeros((8, 8, 3), dtype=np.uint8))
    note = "lossless: no larger than the learned file at -q 3 (1234 B, 30.00 dB)"
    small = modes._noted(modes.Candidate(enc, math.inf), note, "-q 3")
    assert api.info(small.result.data).mode_note == "-q 3" and small.result.note == note
    monkeypatch.setattr(modes, "NOTE_SHARE", 100.0)
    whole = modes._noted(modes.Candidate(enc, math.inf), note, "-q 3")
    assert api.info(whole.result.data).mode_note == note
    assert len(whole.result.data) - len(small.result.data) == len(note) - len("-q 3")


def test_a_high_fidelity_file_says_why_in_its_note(tiny_codec, finer_codec):
    """`udic info` shows why a learned file came from the high-fidelity model, as it does for a
    pixel-coded one: the file's note section holds the encoder's account."""
    image = loaded(smooth_image(32, 40))
    loose = api.encode_pixels(image, 24, 1)
    chosen = api.fidelity_for_pixels(loose, lambda: finer_codec, image, 7.0, 1)
    assert ctr.parse(chosen.data).header.model_id == finer_codec.model_id and len(chosen.data) < len(loose.data)
    # a 383 B file: the whole account would be over 2 % of it, so the file holds the request
    assert api.info(chosen.data).mode_note == "-q 7: the high-fidelity model's file, smaller and no worse"
    assert "±24" in chosen.notices[-1]  # the terminal still gets the whole account
    assert np.array_equal(np.asarray(finer_codec.decode(chosen.data).image),
                          np.asarray(finer_codec.decode(ctr.with_note(chosen.data, None)).image))


def test_an_account_never_costs_a_replacement_its_win(tiny_codec):
    enc = api.encode_with(tiny_codec, loaded(smooth_image(64, 80)), tiny_codec.max_quality, effort=0)
    size = len(enc.data)
    long_note, brief = "x" * int(0.02 * size), "-q 5"
    assert api.info(api._accounted(enc, long_note, brief).data).mode_note == long_note
    assert api.info(api._accounted(enc, long_note + "yy", brief).data).mode_note == brief  # over 2 %
    # where the note would make the file no smaller than the one it replaces: the brief, or nothing
    with_brief = api._accounted(enc, long_note, brief, smaller_than=size + len(brief) + 3)
    assert api.info(with_brief.data).mode_note == brief
    bare = api._accounted(enc, long_note, brief, smaller_than=size + 2)
    assert bare.data == enc.data and bare.notices[-1] == long_note


def test_a_default_file_just_under_a_psnr_target_is_beaten_only_in_fewer_bytes(monkeypatch):
    """The default's search lands within its 0.1 dB promise, 0.02 dB under the target: that
    meets it, so the high-fidelity model's file must meet it in fewer bytes; compared on PSNR, a
    file from its lowest searched rate, far over the target and larger, had won."""
    from types import SimpleNamespace

    from udic.ratecontrol import Probe, SearchResult

    def found(db: float, size: int) -> SearchResult:
        enc = SimpleNamespace(data=bytes(size), bpp=size * 8 / 1e4, notices=[])
        return SearchResult(enc, 3.0, db, True, [Probe(3.0, enc.bpp, db, enc)])

    default, hifi = SimpleNamespace(model_id="a" * 16), SimpleNamespace(model_id="b" * 16, max_quality=7.0)
    monkeypatch.setattr(api, "_search_learned", lambda *a, **k: found(36.5, 3000))  # the other model's answer
    mine = found(33.98, 2000)
    target = RateTarget("psnr", 34.0)
    codec, result = api._with_fidelity(default, hifi, None, 1, None, 0, None, None, target, None, mine)
    assert codec is default and result is mine
    monkeypatch.setattr(api, "_search_learned", lambda *a, **k: found(34.1, 1500))  # met in fewer bytes: it wins
    monkeypatch.setattr(api, "_accounted", lambda enc, *a: enc)
    codec, result = api._with_fidelity(default, hifi, None, 1, None, 0, None, None, target, None, mine)
    assert codec is hifi and len(result.encode.data) == 1500


def test_an_image_over_the_decode_limit_is_measured_by_its_own_encoder(tiny_codec, monkeypatch):
    """The mode choice and a PSNR search decode the files they just made: an image admitted with
    --allow-large (over the limit for files from elsewhere) must not be refused there."""
    image = loaded(smooth_image(32, 40))
    monkeypatch.setattr(ctr, "DEFAULT_MAX_PIXELS", 1000)  # under the image's 1,280 pixels
    with pytest.raises(ctr.ContainerError, match="limit"):
        tiny_codec.decode(api.encode_with(tiny_codec, image, 2.0, effort=0, choose_mode=False).data)
    chosen = api.encode_with(tiny_codec, image, tiny_codec.max_quality, effort=1)
    target = api.encode_with(tiny_codec, image, 1.0, effort=1, target=RateTarget("psnr", 30.0))
    for result in (chosen, target):
        assert ctr.parse(result.data, max_pixels=2000).header.width == 40
