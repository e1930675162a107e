"""The encoder's choice of reduced resolution (bitstream_spec.md §12): for a ``-q`` request, a
half-resolution learned file when it is no larger and no worse than the full-resolution one;
for a bpp or PSNR target, the same search at both resolutions.

Why its own module: ``api`` asks it one question per encode; how the half image is made and
coded (``resample``) and which rates are probed live here.  Torch comes in through the codec
only when an encode runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .codec import Codec, EncodeResult
    from .imageio import LoadedImage
    from .ratecontrol import RateTarget

# Rates (above the asked one) tried at reduced resolution: the first whose file reaches the
# full-resolution file's PSNR is kept if it is no larger.
STEPS = (0.0, 1.0, 2.0, 3.0)
# Each step is probed without adaptation first; the adapted encode follows only when the probe
# is within these of the full file (adaptation adds a few tenths of a dB and saves some bytes).
PROBE_DB = 0.5
PROBE_SIZE = 1.1


def reduced_image(image: LoadedImage) -> LoadedImage:
    """The image the network codes at reduced resolution (spec §12): no alpha (the file keeps
    the full-size plane), the same colour mode, ICC and metadata."""
    from . import resample
    from .imageio import LoadedImage

    return LoadedImage(rgb=resample.downsample(image.rgb), mode=image.mode, alpha=None, icc=image.icc,
                       metadata=image.metadata)


def encode_reduced(codec: Codec, image: LoadedImage, low: LoadedImage, quality: float, effort: int,
                   time_budget: float | None, seed: int, tile: int | None) -> EncodeResult:
    """A learned file of ``image`` whose network codes ``low`` (``reduced_image``)."""
    import dataclasses

    from . import api, resample

    enc = api._encode_learned(codec, low, quality, effort, time_budget, seed, None, tile)
    height, width = image.rgb.shape[:2]
    data, header = resample.as_output_file(enc.data, height, width, image.alpha)
    # The encoder knows its PSNR against ``low`` only; the file's, against ``image``, is measured.
    return dataclasses.replace(enc, data=data, header=header, notices=list(image.notices), psnr=None)


def reduced_if_better(codec: Codec, image: LoadedImage, quality: float, full: Any, effort: int,
                      time_budget: float | None, seed: int, tile: int | None) -> Any:
    """The full-resolution candidate, unless a reduced-resolution file is no larger and no worse.

    Smooth images (gradient art, soft photos at low rates) code a quarter of the latent positions
    for a fraction of the bytes; the upsampled uncoded low image must already beat the full file's
    PSNR, so detailed images cost no extra network pass."""
    from . import api, modes, resample

    height, width = image.rgb.shape[:2]
    if not resample.eligible(height, width):
        return full
    low = reduced_image(image)
    if not resample.worth_trying(image.rgb, low.rgb, full.psnr):
        return full
    for step in STEPS:
        q = min(quality + step, codec.max_quality)
        top = q >= codec.max_quality
        # A probe without adaptation first (a fraction of an adapted encode's time): the adapted
        # file is made only where the probe comes close.
        probe = encode_reduced(codec, image, low, q, 0, None, seed, tile)
        if len(probe.data) > PROBE_SIZE * full.size:
            break
        if api._learned_psnr(codec, image, probe.data) < full.psnr - PROBE_DB:
            if top:
                break
            continue
        enc = encode_reduced(codec, image, low, q, effort, time_budget, seed, tile)
        if len(enc.data) > full.size:
            break
        cand = modes.Candidate(enc, measure=lambda enc=enc: api._learned_psnr(codec, image, enc.data))
        if cand.psnr >= full.psnr:
            return cand
        if top:
            break
    return full


def reduced_target(codec: Codec, image: LoadedImage, target: RateTarget, full: Any, effort: int,
                   time_budget: float | None, seed: int, tile: int | None, decode_rgb: Callable,
                   reference: np.ndarray) -> Any:
    """The full-resolution search's result, or the same search at reduced resolution (spec §12)
    when that meets the target better: a PSNR target in fewer bytes, a bpp target at a higher
    PSNR, or a bpp target below the network's lowest rate at all."""
    from . import resample
    from .metrics import psnr_rgb
    from .ratecontrol import Encoder, refine_adaptive, search_quality

    height, width = image.rgb.shape[:2]
    if not resample.eligible(height, width):
        return full
    low = reduced_image(image)

    def psnr(found: Any) -> float:
        return psnr_rgb(reference, decode_rgb(found.encode.data))

    # Only where the upsampled low image beats what the full-resolution file reaches (or the
    # full search fell short of a bpp target below the network's lowest rate: its file is over
    # the budget; one under a target above the top rate fits it, and is measured like any other).
    over_budget = target.metric == "bpp" and not full.reached and target.error(full.achieved) > 0
    full_psnr = target.value if target.metric == "psnr" else -math.inf if over_budget else psnr(full)
    if not resample.worth_trying(image.rgb, low.rgb, full_psnr):
        return full

    def reduced(q: float, e: int) -> EncodeResult:
        return encode_reduced(codec, image, low, q, e, time_budget, seed, tile)

    result = search_quality(target, Encoder(lambda q: reduced(q, 0), decode_rgb, reference, codec.max_quality),
                            start=full.quality)
    if effort > 0:
        result = refine_adaptive(target, result,
                                 Encoder(lambda q: reduced(q, effort), decode_rgb, reference, codec.max_quality))

    def meets(found: Any) -> bool:  # within the promise (0.1 dB, 3 %) or better
        if target.metric == "psnr":
            return found.achieved >= target.value - 0.1
        return found.achieved <= target.value * 1.03

    if not meets(result):
        return full
    result.notice = None  # met (the adaptive refinement may overshoot a PSNR target: fine)
    if not meets(full):
        return result
    if target.metric == "psnr":
        return result if len(result.encode.data) < len(full.encode.data) else full
    return result if psnr(result) > full_psnr else full
