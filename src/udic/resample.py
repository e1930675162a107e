"""Reduced-resolution coding: the learned codec codes a 2×-downsampled image and the
decoder upsamples it with a fixed integer filter (bitstream_spec.md §12).

Why: on smooth content (gradient wallpapers, soft photos at low rates) most of a learned
file is the cost of its latent positions, not of detail.  Coding a quarter of the
positions and interpolating back costs a fraction of the bytes at the same PSNR
(debian_emerald at `-q 1`: 1,074 B at 37.8 dB instead of 3,286 B at 36.9 dB), and it
reaches rates below the network's lowest.  The encoder keeps such a file only when it
is no larger and no worse than the full-resolution one (``api``), so detailed images
never take it.

The upsampler is integer arithmetic on the decoded 8-bit pixels, so it adds nothing to
what can differ between machines.  numpy only: ``udic info`` and the section checks stay
light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .sections.resample import FACTOR, FILTER_CUBIC, coded_size  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from .container import Header

# FILTER_CUBIC, the only filter: Keys' cubic (a = −1/2) at phases ∓1/4, in 1/128ths.
# Output sample 2i takes low samples i−2 … i+1 with these weights (sum 128); sample 2i + 1
# the mirror image over i−1 … i+2.  Downsampling by 2 puts low sample i at 2i + ½ in
# output coordinates, so output samples 2i and 2i + 1 sit at i − ¼ and i + ¼.
TAPS_EVEN = (-3, 29, 111, -9)
TAPS_ODD = (-9, 111, 29, -3)
SHIFT = 14  # two passes of 1/128ths
BACK_PROJECTIONS = 2  # encoder: refinements of the low image against this upsampler
CEILING_MARGIN_DB = 1.0  # encoder: the uncoded reduction must beat the full file by this much
MIN_SIDE = 128  # encoder: smaller images gain too few latent positions (the network pads to 64)


def _up_axis(a: np.ndarray, axis: int) -> np.ndarray:
    """Doubles ``axis`` with the taps above (edge samples replicated), weights × 128."""
    n = a.shape[axis]
    idx = np.arange(n)

    def at(offset: int) -> np.ndarray:
        return np.take(a, np.clip(idx + offset, 0, n - 1), axis=axis)

    m2, m1, z, p1, p2 = (at(o) for o in (-2, -1, 0, 1, 2))
    even = TAPS_EVEN[0] * m2 + TAPS_EVEN[1] * m1 + TAPS_EVEN[2] * z + TAPS_EVEN[3] * p1
    odd = TAPS_ODD[0] * m1 + TAPS_ODD[1] * z + TAPS_ODD[2] * p1 + TAPS_ODD[3] * p2
    out = np.stack([even, odd], axis=axis + 1)
    shape = list(a.shape)
    shape[axis] = 2 * n
    return out.reshape(shape)


def upsample(low: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, C) uint8 → (height, width, C) uint8: both axes doubled (spec §12), then the
    bottom/right cropped to the output size.  Exact integer arithmetic: int32 holds every
    intermediate (|value| ≤ 255·152² < 2^23)."""
    if low.ndim != 3 or low.dtype != np.uint8:
        raise ValueError(f"expected (H, W, C) uint8, got {low.shape} {low.dtype}")
    if not (0 < height <= 2 * low.shape[0] and 0 < width <= 2 * low.shape[1]):
        raise ValueError(f"cannot upsample {low.shape[:2]} to {(height, width)}")
    wide = _up_axis(low.astype(np.int32), 1)[:, :width]
    tall = _up_axis(wide, 0)[:height]
    return np.clip((tall + (1 << (SHIFT - 1))) >> SHIFT, 0, 255).astype(np.uint8)


def downsample(rgb: np.ndarray, back_projections: int = BACK_PROJECTIONS) -> np.ndarray:
    """Encoder: the low image whose upsampling is close to ``rgb`` (H, W, 3) uint8.

    A Lanczos reduction (odd sizes padded by edge replication), then a few rounds of back
    projection: the upsampling error, averaged over each 2×2 block, is added to the low
    image (+0.3–0.5 dB before coding on smooth images)."""
    from PIL import Image

    height, width = rgb.shape[:2]
    h, w = coded_size(height, width)
    padded = np.pad(rgb, ((0, 2 * h - height), (0, 2 * w - width), (0, 0)), mode="edge")
    low = np.asarray(Image.fromarray(padded).resize((w, h), Image.LANCZOS)).astype(np.float64)
    target = padded.astype(np.float64)
    for _ in range(back_projections):
        err = target - upsample(np.clip(np.rint(low), 0, 255).astype(np.uint8), 2 * h, 2 * w)
        low += err.reshape(h, 2, w, 2, -1).mean(axis=(1, 3))
    return np.clip(np.rint(low), 0, 255).astype(np.uint8)


def worth_trying(rgb: np.ndarray, low: np.ndarray, psnr_to_beat: float) -> bool:
    """Whether upsampling the uncoded low image already beats ``psnr_to_beat`` by a margin
    (coding only loses from there): detailed images are skipped without a network pass."""
    from .metrics import psnr_rgb

    height, width = rgb.shape[:2]
    return psnr_rgb(rgb, upsample(low, height, width)) > psnr_to_beat + CEILING_MARGIN_DB


def eligible(height: int, width: int) -> bool:
    """Whether the encoder tries reduced resolution on an image of this size."""
    return min(height, width) >= MIN_SIDE


def as_output_file(data: bytes, height: int, width: int, alpha: np.ndarray | None) -> tuple[bytes, Header]:
    """A learned file of the low image → the file of the ``height`` × ``width`` image: the
    output size in the header, the resample section, the full-size alpha plane (spec §12).
    Returns (bytes, header).  Everything else (latents, side sections, CRC) is unchanged."""
    import dataclasses

    from . import container as ctr
    from . import sections

    cont = ctr.parse(data, max_pixels=ctr.MAX_DIMENSION**2)
    payloads = {int(k): v for k, v in cont.sections.items()}
    if int(ctr.Section.ALPHA) in payloads or int(ctr.Section.RESAMPLE) in payloads:
        raise ValueError("the low image's file must have neither alpha nor a resample section")
    payloads.update(sections.encode_sections({"resample": FACTOR, "alpha": alpha}))
    header = dataclasses.replace(cont.header, height=height, width=width, flags=ctr.flags_for(payloads),
                                 version=max(cont.header.version, ctr.RESAMPLE_VERSION))
    out = ctr.Container(header=header, sections={ctr.Section(t): p for t, p in payloads.items()},
                        ancillary=cont.ancillary)
    return ctr.write(out), header
