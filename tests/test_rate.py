"""udic.rate: the one place where quality becomes the stored rate, and what a rate means."""

from __future__ import annotations

import math

import pytest

from udic.errors import ContainerError, UsageError
from udic.models import rate_mix
from udic.rate import RATE_UNIT, Rate, interpolate_lambda, lora_index, lora_key, to_quality, to_stored


def test_stored_unit_and_conversion() -> None:
    assert RATE_UNIT == 256
    assert to_stored(2.25) == 576 and to_quality(576) == 2.25
    assert to_stored(1 / 512 + 1e-9) == 1  # rounded to the nearest 1/256
    assert all(to_stored(to_quality(s)) == s for s in range(0, 5 * 256 + 1))


@pytest.mark.parametrize("quality", [-0.01, 5.01, math.nan, math.inf, "3", None, True])
def test_from_quality_validates_once(quality) -> None:
    with pytest.raises(UsageError):
        Rate.from_quality(quality, 6)


def test_from_stored_refuses_rates_the_model_lacks() -> None:
    assert Rate.from_stored(5 * 256, 6).quality == 5.0
    with pytest.raises(ContainerError, match="out of range"):
        Rate.from_stored(5 * 256 + 1, 6)


def test_nearest_clamps_for_searches() -> None:
    assert Rate.nearest(-1.0, 6).stored == 0
    assert Rate.nearest(9.0, 6).stored == 5 * 256
    assert Rate.nearest(2.001, 6).stored == 512


def test_lora_mix_and_keys() -> None:
    assert lora_key(3) == "r3" and lora_index("r3") == 3
    with pytest.raises(ValueError):
        lora_index("rate3")
    assert Rate(512, 6).lora_mix() == {"r2": 1.0}
    assert Rate(2 * 256 + 64, 6).lora_mix() == {"r2": 0.75, "r3": 0.25}
    assert Rate(5 * 256, 6).lora_mix() == {"r5": 1.0}
    assert rate_mix(2 * 256 + 64, 6) == Rate(2 * 256 + 64, 6).lora_mix()  # the deprecated alias agrees
    assert (Rate(576, 6).index, Rate(576, 6).fraction) == (2, 0.25)


def test_lambda_interpolates_in_the_log_domain() -> None:
    lambdas = (0.001, 0.004, 0.016)
    assert Rate(256, 3).rd_lambda(lambdas) == pytest.approx(0.004)
    assert Rate(256 + 128, 3).rd_lambda(lambdas) == pytest.approx(0.008)
    assert interpolate_lambda(lambdas, 2.0) == pytest.approx(0.016)


def test_codec_takes_a_rate(tiny_codec) -> None:
    from conftest import loaded, smooth_image

    image = loaded(smooth_image(24, 24))
    rate = tiny_codec.rate(2.5)
    enc = tiny_codec.encode(image, rate)
    assert enc.header.rate == rate.stored and enc.rate == rate
    assert enc.data == tiny_codec.encode(image, 2.5).data
    with pytest.raises(UsageError):
        tiny_codec.encode(image, Rate(0, tiny_codec.config.num_rates + 1))
