"""Which representation an image gets: the learned codec, near-lossless or lossless.

Why this exists: the learned transform has a fidelity ceiling and, on synthetic
content, can cost more than the pixels.  So the quality scale continues past the
model's top rate into the pixel coder (``PIXEL_LADDER``), a PSNR target above what the
network reaches is met by the pixel coder, and at the default effort a lossy request
is answered with a pixel-coded file whenever that file is no larger *and* no worse —
so a lossy udic file is never larger than udic's own lossless file of the image.
Nothing here imports torch: a pixel-only encode never loads a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and the pixel coder load on first use: `-q` checks stay cheap
    import numpy as np

    from . import pixelcodec
    from .imageio import LoadedImage

# max_error at qualities top+1 … top+4 (0 = lossless).  PSNR (8-bit, uniform error):
# ±4 ≈ 40 dB, ±2 ≈ 45 dB, ±1 ≈ 50 dB, then exact.
PIXEL_LADDER: tuple[int, ...] = (4, 2, 1, 0)
# Near-lossless tolerances tried by the mode choice and by PSNR targets, loosest first.
NEAR_LOSSLESS_CANDIDATES: tuple[int, ...] = (8, 4, 2, 1)
# The mode choice tries near-lossless only where it can plausibly win: when the lossless
# file is within this factor of the lossy one (photos are ~10x apart and are skipped).
NEAR_LOSSLESS_REACH = 3.0
MIN_CHOICE_EFFORT = 1  # effort 0 is the plain learned encode, nothing else tried


def max_quality(lossy_top: float) -> float:
    """The top of the ``-q`` scale: the model's rates, then the pixel ladder."""
    return lossy_top + len(PIXEL_LADDER)


def pixel_max_error(quality: float, lossy_top: float) -> int | None:
    """The pixel coder's tolerance for a quality above the model's top, else None."""
    if quality <= lossy_top + 1e-9:
        return None
    step = min(max(math.ceil(quality - lossy_top - 1e-9), 1), len(PIXEL_LADDER))
    return PIXEL_LADDER[step - 1]


def describe_pixel_quality(lossy_top: float) -> str:
    parts = [f"{lossy_top + i + 1:g} = {'lossless' if n == 0 else f'±{n}'}" for i, n in enumerate(PIXEL_LADDER)]
    return ", ".join(parts)


def exact_samples(image: LoadedImage) -> tuple[np.ndarray, int]:
    """The source's samples as the pixel coder takes them: (H, W, C), C = 1 gray, 2 gray +
    alpha, 3 RGB, 4 RGBA, at the source's bit depth (16-bit PNGs keep their 16 bits)."""
    import numpy as np

    wide = getattr(image, "wide", None)
    if wide is not None:
        return wide, int(getattr(image, "bit_depth", 16))
    colour = image.rgb[..., :1] if image.mode == "L" else image.rgb
    planes = [colour] if image.alpha is None else [colour, image.alpha[..., None]]
    return np.ascontiguousarray(np.concatenate(planes, axis=2)), 8


def ladder_error(image: LoadedImage, max_error_8bit: int) -> int:
    """A ladder step (in 8-bit units, as ``-q`` means it) in the source's sample units."""
    depth = exact_samples(image)[1]
    return max_error_8bit << (depth - 8) if depth > 8 else max_error_8bit


def reference_rgb(image: LoadedImage) -> np.ndarray:
    """The 8-bit RGB that lossy PSNRs are measured against (gray replicated)."""
    return image.rgb


def encode_pixels(image: LoadedImage, max_error: int, effort: int = 1, note: str | None = None,
                  keep_reconstruction: bool = False) -> pixelcodec.PixelEncoded:
    """A pixel-coded file of ``image``; the source's notices travel with the result."""
    from . import pixelcodec

    samples, depth = exact_samples(image)
    enc = pixelcodec.encode_file(samples, depth, max_error, effort, icc=image.icc, metadata=image.metadata,
                                 keep_reconstruction=keep_reconstruction, note=note)
    enc.notices = [n for n in image.notices if not (depth > 8 and "16-bit" in n)]
    return enc


def pixel_psnr(image: LoadedImage, enc: pixelcodec.PixelEncoded) -> float:
    """Colour PSNR of a pixel-coded result, on the scale lossy PSNRs use."""
    from . import pixelcodec

    if enc.max_error == 0:
        return math.inf
    samples, depth = exact_samples(image)
    assert enc.reconstruction is not None, "encode with keep_reconstruction=True"
    return pixelcodec.colour_psnr(samples, enc.reconstruction, depth)


class Candidate:
    """A finished file and its PSNR, measured only if a decision needs it."""

    def __init__(self, result: object, psnr: float | None = None,
                 measure: Callable[[], float] | None = None) -> None:
        self.result = result  # a learned EncodeResult or a pixelcodec.PixelEncoded
        self._psnr = psnr
        self._measure = measure

    @property
    def psnr(self) -> float:
        if self._psnr is None:
            assert self._measure is not None
            self._psnr = self._measure()
        return self._psnr

    @property
    def size(self) -> int:
        return len(self.result.data)  # type: ignore[attr-defined]


def _with_note(image: LoadedImage, max_error: int, effort: int, note: str) -> Candidate:
    """A pixel-coded candidate; ``max_error`` in 8-bit steps (scaled for 16-bit sources)."""
    max_error = ladder_error(image, max_error)
    enc = encode_pixels(image, max_error, effort, note=note, keep_reconstruction=max_error > 0)
    return Candidate(enc, pixel_psnr(image, enc))


def choose_smaller(image: LoadedImage, lossy: Candidate, effort: int, quality: float) -> Candidate:
    """The lossy file, unless a pixel-coded one is no larger and at least as good (the
    comparison counts every byte of the final file, the encoder's note included)."""
    if effort < MIN_CHOICE_EFFORT:
        return lossy
    label = f"-q {quality:g}"
    exact = _with_note(image, 0, effort, "")
    if exact.size <= lossy.size:
        noted = _fitting(image, exact, 0, effort, lossy.size,
                         f"lossless: no larger than the learned file at {label} ({lossy.size} B, {lossy.psnr:.2f} dB)")
        if noted is not None:
            return noted
    if exact.size > NEAR_LOSSLESS_REACH * lossy.size:
        return lossy
    for max_error in reversed(NEAR_LOSSLESS_CANDIDATES):  # the most faithful that fits first
        near = _with_note(image, max_error, effort, "")
        if near.size <= lossy.size and near.psnr >= lossy.psnr:
            noted = _fitting(image, near, max_error, effort, lossy.size,
                             f"near-lossless ±{max_error}: {near.psnr:.2f} dB, smaller and better than the "
                             f"learned file at {label} ({lossy.size} B, {lossy.psnr:.2f} dB)")
            if noted is not None:
                return noted
    return lossy


def _fitting(image: LoadedImage, cand: Candidate, max_error: int, effort: int, budget: int,
             note: str) -> Candidate | None:
    """The candidate with its note if that fits ``budget`` bytes, else without, else None."""
    for text in (note, None):
        noted = _renote(image, cand, max_error, effort, text)
        if noted.size <= budget:
            return noted
    return None


def _renote(image: LoadedImage, cand: Candidate, max_error: int, effort: int, note: str | None) -> Candidate:
    """The candidate's file with the encoder's account of the choice (a few bytes)."""
    from . import pixelcodec

    return Candidate(pixelcodec.with_note(cand.result, note), cand.psnr)  # type: ignore[arg-type]


def meet_psnr(image: LoadedImage, target_db: float, effort: int, best_lossy_db: float) -> Candidate:
    """The loosest pixel coding whose PSNR reaches ``target_db`` (lossless if none does)."""
    for max_error in NEAR_LOSSLESS_CANDIDATES:
        cand = _with_note(image, max_error, effort, "")
        if cand.psnr >= target_db:
            return _renote(image, cand, max_error, effort,
                           f"near-lossless ±{max_error}: {cand.psnr:.2f} dB meets --target-psnr {target_db:g} "
                           f"(the learned codec reaches {best_lossy_db:.2f} dB)")
    exact = _with_note(image, 0, effort, "")
    return _renote(image, exact, 0, effort, f"lossless: --target-psnr {target_db:g} is above what the learned "
                                            f"codec reaches ({best_lossy_db:.2f} dB)")


def best_within_bytes(image: LoadedImage, budget: int, lossy: Candidate, effort: int) -> Candidate:
    """For a size target: a pixel-coded file that fits the budget and beats the lossy PSNR."""
    if effort < MIN_CHOICE_EFFORT:
        return lossy
    exact = _with_note(image, 0, effort, "")
    if exact.size <= budget:
        noted = _fitting(image, exact, 0, effort, budget, f"lossless: fits the size target ({budget} B)")
        if noted is not None:
            return noted
    if exact.size > NEAR_LOSSLESS_REACH * budget:
        return lossy
    for max_error in reversed(NEAR_LOSSLESS_CANDIDATES):
        near = _with_note(image, max_error, effort, "")
        if near.size <= budget and near.psnr > lossy.psnr:
            noted = _fitting(image, near, max_error, effort, budget,
                             f"near-lossless ±{max_error}: {near.psnr:.2f} dB within the size target "
                             f"(the learned file: {lossy.psnr:.2f} dB)")
            if noted is not None:
                return noted
    return lossy
