"""Rate control: the fractional-quality search behind --target-bpp / --target-psnr."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image

from conftest import TinyModel, loaded, png_bytes, run, smooth_image
from udic import api
from udic.errors import UsageError
from udic.metrics import psnr_rgb
from udic.ratecontrol import MAX_PROBES, Encoder, Probe, RateTarget, SearchResult, refine_adaptive, search_quality

REF = np.zeros((4, 4, 3), dtype=np.uint8)


@dataclass
class FakeEncode:
    quality: float
    bpp: float
    notices: list[str] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return struct.pack("<d", self.quality)


def fake_curve(q: float) -> FakeEncode:
    return FakeEncode(q, 0.2 * math.exp(0.45 * q))  # bpp grows smoothly with q


def fake_psnr(q: float) -> float:
    return 27.0 + 1.6 * q


def fake_decode(data: bytes) -> np.ndarray:
    """An image whose PSNR against REF is fake_psnr(q): a constant error of the right size."""
    (q,) = struct.unpack("<d", data)
    err = 255.0 / 10 ** (fake_psnr(q) / 20)
    return np.full(REF.shape, err, dtype=np.float64)


def test_bpp_target_within_one_percent() -> None:
    calls: list[float] = []

    def encode_at(q: float) -> FakeEncode:
        calls.append(q)
        return fake_curve(q)

    res = search_quality(RateTarget("bpp", 0.61), Encoder(encode_at, fake_decode, REF, 5.0))
    assert res.reached and res.notice is None
    assert abs(res.achieved / 0.61 - 1) <= 0.01
    assert res.encode.bpp == res.achieved and res.quality * 256 == round(res.quality * 256)
    assert len(calls) == len(set(calls)) <= MAX_PROBES


def test_psnr_target_within_tolerance() -> None:
    res = search_quality(RateTarget("psnr", 32.3), Encoder(fake_curve, fake_decode, REF, 5.0))
    assert res.reached
    assert abs(res.achieved - 32.3) <= 0.03
    assert res.achieved == pytest.approx(psnr_rgb(REF, fake_decode(res.encode.data)))


@pytest.mark.parametrize("value, expect_q, side", [(0.05, 0.0, "below"), (5.0, 5.0, "above")])
def test_unreachable_target_writes_the_closest_with_a_notice(value: float, expect_q: float, side: str) -> None:
    res = search_quality(RateTarget("bpp", value), Encoder(fake_curve, fake_decode, REF, 5.0))
    assert not res.reached
    assert res.quality == expect_q
    assert res.notice is not None and side in res.notice and f"-q {expect_q:g}" in res.notice


def test_adaptive_refinement_reaims() -> None:
    """Adaptation shifts the curve (here: 10 % fewer bits); Newton steps re-aim at the target."""
    target = RateTarget("bpp", 0.7)
    first = search_quality(target, Encoder(fake_curve, fake_decode, REF, 5.0))
    shifted = lambda q: FakeEncode(q, 0.9 * fake_curve(q).bpp)  # noqa: E731
    res = refine_adaptive(target, first, Encoder(shifted, fake_decode, REF, 5.0))
    assert abs(res.achieved / 0.7 - 1) <= 0.03
    assert res.quality > first.quality


def test_an_adaptive_re_aim_keeps_the_smallest_file_that_meets_a_psnr_target() -> None:
    # debian_emerald at 38 dB (session 26): the adaptive encode at the non-adaptive answer
    # overshot (38.45 dB), the Newton step then fell short (37.61 dB, closer to the target): the
    # overshooting file meets the target and is the one kept.

    def adaptive(q: float) -> FakeEncode:
        return FakeEncode(q, 0.1 * q)

    def decode(data: bytes) -> np.ndarray:
        (q,) = struct.unpack("<d", data)
        db = 38.45 if q >= 1.5 else 37.61
        return np.full(REF.shape, 255.0 / 10 ** (db / 20), dtype=np.float64)

    target = RateTarget("psnr", 38.0)
    # The non-adaptive search's answer: q 1.5 at 38.0 dB, its curve rising 1.6 dB a step.
    probes = [Probe(q, 0.1 * q, 38.0 + 1.6 * (q - 1.5), FakeEncode(q, 0.1 * q)) for q in (1.5, 2.5)]
    first = SearchResult(probes[0].encode, 1.5, 38.0, True, probes)
    res = refine_adaptive(target, first, Encoder(adaptive, decode, REF, 5.0))
    assert len(res.probes) == 3 and res.achieved == pytest.approx(38.45, abs=0.01) and res.reached and res.notice is None


def test_an_adaptive_re_aim_takes_a_secant_step_once_it_brackets_the_target() -> None:
    # Adaptation steepens the curve (4 dB a step against the non-adaptive 1.6): the Newton step
    # from 43 dB lands at 40.5 dB, and the secant between the two adaptive files hits 42 dB.
    def adaptive(q: float) -> FakeEncode:
        return FakeEncode(q, 0.1 * q)

    def decode(data: bytes) -> np.ndarray:
        (q,) = struct.unpack("<d", data)
        return np.full(REF.shape, 255.0 / 10 ** ((37.0 + 4.0 * q) / 20), dtype=np.float64)

    probes = [Probe(q, 0.1 * q, 42.0 + 1.6 * (q - 1.5), FakeEncode(q, 0.1 * q)) for q in (1.5, 2.5)]
    first = SearchResult(probes[0].encode, 1.5, 42.0, True, probes)
    res = refine_adaptive(RateTarget("psnr", 42.0), first, Encoder(adaptive, decode, REF, 5.0))
    assert [p.quality for p in res.probes] == [1.5, 0.875, 1.25]
    assert res.quality == 1.25 and res.achieved == pytest.approx(42.0, abs=0.01)


def test_a_psnr_search_keeps_the_smallest_file_at_or_above_the_target() -> None:
    target = RateTarget("psnr", fake_psnr(2.0) + 0.5)
    res = search_quality(target, Encoder(fake_curve, fake_decode, REF, 5.0), start=4.0)
    assert res.achieved >= target.value - 0.1 and res.reached
    meeting = [p for p in res.probes if p.psnr >= target.value - 0.1]
    assert res.encode.bpp == min(p.bpp for p in meeting)  # the smallest probe that meets it, not any
    below = search_quality(RateTarget("psnr", 20.0), Encoder(fake_curve, fake_decode, REF, 5.0), start=1.0)
    assert below.quality == 0.0 and not below.reached and "below what this model reaches" in below.notice


@pytest.mark.parametrize("metric, value", [("bpp", 0.0), ("psnr", -3.0), ("bpp", math.nan), ("ssim", 1.0)])
def test_bad_targets(metric: str, value: float) -> None:
    with pytest.raises(UsageError):
        RateTarget(metric, value)  # type: ignore[arg-type]


def test_real_codec_hits_a_reachable_bpp(tiny_codec) -> None:
    image = loaded(smooth_image(64, 80, seed=5))
    aim = tiny_codec.encode(image, 2.3).bpp  # reachable by construction
    enc = api.encode_with(tiny_codec, image, 3.0, target=RateTarget("bpp", aim))
    assert abs(enc.bpp / aim - 1) <= 0.03
    assert tiny_codec.decode(enc.data).header.rate == enc.header.rate  # the quality is in the file


def test_cli_target_psnr_and_misuse(runner, tiny_cache: TinyModel, tmp_path) -> None:
    img = smooth_image(64, 80, seed=6)
    (tmp_path / "a.png").write_bytes(png_bytes(Image.fromarray(img)))
    codec = api.get_codec(tiny_cache.id)
    aim = psnr_rgb(img, np.asarray(codec.decode(codec.encode(loaded(img), 1.7).data).image))
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, "--effort", "0",
                 "--target-psnr", f"{aim:.3f}", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    out = np.asarray(api.decode((tmp_path / "a.udic").read_bytes(), model=tiny_cache.id).image)
    assert abs(psnr_rgb(img, out) - aim) <= 0.1
    for args, message in ((["--target-bpp", "1", "--target-psnr", "30"], "not both"),
                          (["-q", "2", "--target-bpp", "1"], "cannot be combined"),
                          (["--target-bpp", "-1"], "positive")):
        bad = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, "-o",
                  str(tmp_path / "b.udic"), *args)
        assert bad.exit_code != 0 and message in bad.stderr, bad.stderr
        assert not (tmp_path / "b.udic").exists()


def test_smallest_at_least_takes_a_probe_over_the_floor_when_the_answer_sits_under_it() -> None:
    """kodim01 at -q 7: the search kept its smallest file within the 0.1 dB promise (40.257 dB),
    the near-lossless file to replace had 40.282 dB, and a 40.304 dB probe was at hand."""
    from types import SimpleNamespace

    from udic.ratecontrol import Probe, SearchResult, smallest_at_least

    probes = [Probe(q, bpp, db, SimpleNamespace(data=bytes(n))) for q, bpp, db, n in
              [(6.24, 3.135, 40.590, 154), (6.14, 3.053, 40.257, 150), (6.16, 3.066, 40.304, 151)]]
    answer = SearchResult(probes[1].encode, 6.14, 40.257, True, probes)
    picked = smallest_at_least(answer, 40.282)
    assert picked is not None and picked.quality == 6.16 and picked.achieved == 40.304
    assert picked.encode is probes[2].encode and picked.probes == probes
    assert smallest_at_least(answer, 40.25) is answer  # the answer already reaches it
    assert smallest_at_least(answer, 40.6) is None  # no file does


def test_an_exact_file_at_the_top_of_the_bracket_is_bisected_not_crept_up_to() -> None:
    # Above q 4 the file decodes exactly (infinite PSNR): a secant step towards it has no slope
    # and crept up from the lower end by 1/256 a probe, all MAX_PROBES of them.
    def decode(data: bytes) -> np.ndarray:
        (q,) = struct.unpack("<d", data)
        if q >= 4.0:
            return REF.astype(np.float64)
        return np.full(REF.shape, 255.0 / 10 ** (fake_psnr(q) / 20), dtype=np.float64)

    target = fake_psnr(3.8)
    res = search_quality(RateTarget("psnr", target), Encoder(fake_curve, decode, REF, 5.0))
    assert res.reached and len(res.probes) <= 7
    assert target - 0.1 <= res.achieved < target + 0.2 and 3.7 <= res.quality < 3.9


def test_an_adaptive_re_aim_that_misses_keeps_a_file_of_the_search_that_met_the_target() -> None:
    # Every adaptive re-aim lands over 0.1 dB under 37 dB, where the non-adaptive search had met
    # it: its file answers, and the request is not reported as beyond the model.
    def adaptive(q: float) -> FakeEncode:
        return FakeEncode(q, 0.1 * q)

    def decode(data: bytes) -> np.ndarray:
        return np.full(REF.shape, 255.0 / 10 ** (36.6 / 20), dtype=np.float64)

    probes = [Probe(q, 0.2 * q, 37.0 + 2.0 * (q - 3.5), FakeEncode(q, 0.2 * q)) for q in (3.5, 4.0)]
    first = SearchResult(probes[0].encode, 3.5, 37.0, True, probes)
    res = refine_adaptive(RateTarget("psnr", 37.0), first, Encoder(adaptive, decode, REF, 5.0))
    assert res.reached and res.notice is None
    assert res.quality == 3.5 and res.achieved == 37.0
