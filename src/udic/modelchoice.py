"""Which packaged model encodes an image when the user names none: content-adaptive model choice.

Why: a model trained on photographs codes flat art worse than one that also saw procedural
flat art, line art, text and pixel art (udic-hp-syn6-loram: 3-9 % smaller on such images, 2 %
larger on photos; docs/training.md).  Since session 9 the default is such a model (10 % synthetic
images: syn7, better than syn6 on every set; since session 10 syn8, since session 11 syn9, since
session 12 syn11, since session 13 syn12, since session 14 syn13, since session 15 syn14, since session 16 syn15,
since session 17 syn16, since session 20 syn19, since session 22 syn21, since session 25 syn24 and since session 27 syn26r7 (seven rates), one or more cycles each, each better than the one before on every set),
so the choice names it for both;
it stays the seam for a separate synthetic-art model.  Synthetic images are easy to tell apart:
most of their pixels repeat the pixel to the left or above (Kodak: at most 31 %; the dev comic,
line, vector and pixel sets: at least 39 %, most over 70 %).  The file names its model, so decoding needs no such choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy loads on first use: the CLI's argument checks import this module
    import numpy as np

SYNTHETIC_MODEL = "78e43aeb1405ce38"  # udic-hp-syn26r7-loram, packaged (also the default)
# The high-fidelity model: N = 128, M = 320 latent channels, eight rates up to ~42 dB on Kodak
# (udic-hp-gpu31-wide: udic-hp-gpu27-wide, 8 minutes on one H200, continued on one CPU thread 88
# minutes at its rates 3-7 (gpu29), 130 more at 4-7 (gpu30) and 134 more (gpu31): 0.4-0.5 % smaller
# at 34-42 dB on Kodak than gpu30, which was 0.7-1.2 % smaller than gpu29, docs/training.md).  The default's M = 128 stops near
# 35 dB, above which targets went to the pixel coder (Kodak at 42 dB: near-lossless files 1.6-1.9x
# this model's).  Used on photos only when the user named no model: beyond and near the default's top
# rate (api: _with_fidelity, _fidelity_if_smaller, fidelity_for_pixels).
HIGH_FIDELITY_MODEL = "dd01c2bb77ba83d9"
SYNTHETIC_SHARE = 0.4  # repeat share from which an image counts as synthetic
MIN_EFFORT = 1  # effort 0 is the plain encode with the default model, nothing chosen
_SAMPLE_PIXELS = 4_000_000  # larger images are judged on a regular subset of their rows


def repeat_share(rgb: np.ndarray) -> float:
    """Share of pixels (rows 1 on, every ``stride``-th row of a large image) equal in every
    channel to their left or upper neighbour."""
    import numpy as np

    h, w = rgb.shape[:2]
    if h < 2 or w < 2:
        return 0.0
    stride = max(1, (h * w) // _SAMPLE_PIXELS)
    rows = np.arange(1, h)[::stride]
    cur, up = rgb[rows], rgb[rows - 1]
    same = np.all(cur == up, axis=-1)
    same[:, 1:] |= np.all(cur[:, 1:] == cur[:, :-1], axis=-1)
    return float(same.mean())


def looks_synthetic(rgb: np.ndarray) -> bool:
    """Whether most pixels repeat their left or upper neighbour (flat synthetic art)."""
    return repeat_share(rgb) >= SYNTHETIC_SHARE


def model_for(rgb: np.ndarray, model: str | None, effort: int) -> str | None:
    """The model to encode with: the user's if named; from ``MIN_EFFORT`` on, the synthetic-art
    model for images that look synthetic; otherwise None (the default)."""
    if model is not None or effort < MIN_EFFORT:
        return model
    return SYNTHETIC_MODEL if looks_synthetic(rgb) else None


def fidelity_model_for(model: str | None) -> str | None:
    """The model tried for rate targets beyond the top rate: none when the user named a model."""
    return HIGH_FIDELITY_MODEL if model is None else None
