"""Content-adaptive model choice: synthetic art gets the model trained with synthetic images."""

from __future__ import annotations

import numpy as np
import pytest

from udic import api, hub, modelchoice

from conftest import flat_art, smooth_image


def test_repeat_share_hand_computed() -> None:
    img = np.zeros((3, 3, 3), np.uint8)
    img[1, 0] = (1, 0, 0)  # row 1: (1,0,0) 0 0 → x=1 repeats above, x=2 both; x=0 neither
    img[2] = [(5, 5, 5), (6, 6, 6), (6, 6, 6)]  # row 2: nothing above equal; x=2 repeats left
    assert modelchoice.repeat_share(img) == pytest.approx(3 / 6)
    assert modelchoice.repeat_share(np.zeros((1, 5, 3), np.uint8)) == 0.0


def test_large_images_are_judged_on_sampled_row_pairs() -> None:
    big = np.zeros((2100, 2000, 3), np.uint8)  # over the sample size: every other row pair
    big[:, ::2] = 255  # columns alternate: nothing repeats its left neighbour, all repeat above
    assert modelchoice.repeat_share(big) == 1.0
    big[1::2] = 128 - big[1::2] // 2  # now no row repeats the one above either
    assert modelchoice.repeat_share(big) == 0.0


def test_model_for_follows_content_effort_and_the_users_choice() -> None:
    art, photo = flat_art(), smooth_image(48, 64)
    assert modelchoice.looks_synthetic(art) and not modelchoice.looks_synthetic(photo)
    assert modelchoice.model_for(art, None, 1) == modelchoice.SYNTHETIC_MODEL
    assert modelchoice.model_for(photo, None, 1) is None
    assert modelchoice.model_for(art, None, 0) is None  # effort 0: the plain default encode
    assert modelchoice.model_for(art, "udic-hp-narrow4-loram", 2) == "udic-hp-narrow4-loram"


def test_the_synthetic_model_is_packaged_and_verifies() -> None:
    resolved = hub.resolve(modelchoice.SYNTHETIC_MODEL, progress=False, allow_download=False)
    assert resolved.path.exists() and resolved.path.name.startswith("udic-hp-syn26r7-loram-")


def test_encode_names_the_chosen_model_and_decodes() -> None:
    api._codecs.clear()
    art = flat_art()
    result = api.encode_image(art, quality=1, effort=1, progress=False, choose_mode=False)
    assert result.header.model_id == modelchoice.SYNTHETIC_MODEL
    out = np.asarray(api.decode(result.data, progress=False).image.convert("RGB"))
    assert out.shape == art.shape
    named = api.encode_image(art, quality=1, effort=1, progress=False, choose_mode=False,
                             model="udic-hp-narrow4-loram")  # the user's choice wins
    assert named.header.model_id == "2f5d4cc1bb16c5a6" != modelchoice.SYNTHETIC_MODEL
