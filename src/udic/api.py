"""The small Python API the CLI is built on.

>>> import udic.api as udic
>>> data = udic.encode("photo.png", quality=3)
>>> udic.decode(data).image.save("back.png")
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from PIL import Image

from . import container as ctr
from .effort import DEFAULT_EFFORT
from . import metadata as metadata_mod
from .codec import Codec, DecodeResult, EncodeResult
from .errors import InputError
from .imageio import DEFAULT_MAX_PIXELS, LoadedImage, load_image, png_keeping_metadata
from .ratecontrol import RateTarget

# Integer rate indices of the packaged model, lowest quality first.
DEFAULT_QUALITIES = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
DEFAULT_QUALITY = 3.0

_codecs: dict[tuple[str | None, str], Codec] = {}


# Float precision of the analysis/synthesis transforms: "fp32" (default) or "bf16"
# (about 3× faster on CPUs with AMX/AVX-512-bf16, ≈0.01–0.07 dB lower PSNR).  The
# entropy-coded integers never depend on it.
PRECISION = "fp32"


def get_codec(model: str | None = None, device: str = "cpu", progress: bool = True) -> Codec:
    """A cached codec for ``model`` (id, name, path, or None for the default)."""
    key = (model, device)
    if key not in _codecs:
        codec = Codec.load(model, device=device, progress=progress)
        _codecs[key] = codec
        _codecs[(codec.model_id, device)] = codec
    codec = _codecs[key]
    codec.precision = PRECISION
    return codec


ImageLike = Image.Image | np.ndarray | str | os.PathLike | bytes | LoadedImage


def as_loaded(image: ImageLike, allow_large: bool = False) -> LoadedImage:
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, Image.Image):  # through PNG, keeping its ICC, EXIF and XMP
        return load_image(png_keeping_metadata(image), allow_large=allow_large)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise InputError("arrays must be uint8 (H, W) or (H, W, 3|4)")
        return as_loaded(Image.fromarray(image), allow_large)
    return load_image(image, allow_large=allow_large)


def encode_image(
    image: ImageLike,
    quality: float = DEFAULT_QUALITY,
    model: str | None = None,
    device: str = "cpu",
    allow_large: bool = False,
    progress: bool = True,
    effort: int = DEFAULT_EFFORT,
    time_budget: float | None = None,
    seed: int = 0,
    on_step: "Callable[[str, int, int, float], None] | None" = None,
    tile: int | None = None,
    target: RateTarget | None = None,
) -> EncodeResult:
    """Encode; ``effort`` > 0 adapts the encode to this image first (default: the CLI's).

    ``tile``: tile side in pixels (0 = whole image, None = tiled only when large);
    ``on_step(phase, step, total, rd_cost)`` reports adaptation steps and tiles;
    ``target`` (a bpp or PSNR) searches the fractional quality that meets it,
    starting from ``quality``.
    """
    loaded = as_loaded(image, allow_large)
    codec = get_codec(model, device, progress)
    return encode_with(codec, loaded, quality, effort, time_budget, seed, on_step, tile, target)


def encode_with(
    codec: Codec,
    image: LoadedImage,
    quality: float,
    effort: int = 0,
    time_budget: float | None = None,
    seed: int = 0,
    on_step: "Callable[[str, int, int, float], None] | None" = None,
    tile: int | None = None,
    target: RateTarget | None = None,
) -> EncodeResult:
    """``encode_image`` on a given codec (batch workers each hold their own)."""
    if target is not None:
        return _encode_to_target(codec, image, quality, effort, time_budget, seed, on_step, tile, target)
    if effort <= 0:
        on_tile = None if on_step is None else (lambda done, total: on_step("tiles", done, total, math.nan))
        return codec.encode(image, quality, tile=tile, progress=on_tile)
    from .adapt import AdaptConfig, adapt_encode

    config = AdaptConfig.for_effort(effort, time_budget=time_budget, seed=seed)
    return adapt_encode(codec, image, quality, config, progress=on_step, tile=tile).encode


def _encode_to_target(codec: Codec, image: LoadedImage, start: float, effort: int, time_budget: float | None,
                      seed: int, on_step, tile: int | None, target: RateTarget) -> EncodeResult:
    from .ratecontrol import Encoder, refine_adaptive, search_quality

    def decode_rgb(data: bytes) -> np.ndarray:
        return np.asarray(codec.decode(data).image.convert("RGB"))

    reference = np.asarray(Image.fromarray(image.rgb).convert("L").convert("RGB")) if image.mode == "L" else image.rgb
    plain = Encoder(lambda q: encode_with(codec, image, q, 0, tile=tile), decode_rgb, reference, codec.max_quality)
    result = search_quality(target, plain, start=start)
    if effort > 0:
        adaptive = Encoder(lambda q: encode_with(codec, image, q, effort, time_budget, seed, on_step, tile),
                           decode_rgb, reference, codec.max_quality)
        result = refine_adaptive(target, result, adaptive)
    if result.notice:
        result.encode.notices.append(result.notice)
    return result.encode


def encode(
    image: ImageLike,
    quality: float = DEFAULT_QUALITY,
    model: str | None = None,
    device: str = "cpu",
    effort: int = DEFAULT_EFFORT,
) -> bytes:
    """Compress an image (path, bytes, PIL image or uint8 array) to .udic bytes, at
    ``udic encode``'s default effort unless told otherwise."""
    return encode_image(image, quality, model, device, effort=effort).data


def decode(
    data: bytes,
    device: str = "cpu",
    allow_large: bool = False,
    progress: bool = True,
    model: str | None = None,
    on_tile: "Callable[[int, int], None] | None" = None,
) -> DecodeResult:
    """Decompress .udic bytes; ``result.image`` is a PIL image.

    The model comes from the file's model id; ``model`` (a path, name or id) names
    weights explicitly, e.g. an unregistered .safetensors file the encoder used.
    ``on_tile(done, total)`` reports progress through a tiled image.
    """
    max_pixels = ctr.MAX_DIMENSION**2 if allow_large else ctr.DEFAULT_MAX_PIXELS
    header = ctr.parse(data, max_pixels=max_pixels).header
    codec = get_codec(model if model is not None else header.model_id, device, progress)
    return codec.decode(data, max_pixels=max_pixels, progress=on_tile)


@dataclass
class FileInfo:
    """What ``udic info`` reports about a file, without decoding it."""

    bytes: int
    width: int
    height: int
    bpp: float
    colour: str
    model_id: str
    quality: float
    adapters: bool
    alpha: bool
    icc: bool
    header_bytes: int
    overhead_bytes: int
    sections: dict[str, int]
    latent_crc: str
    version: int
    tile: int  # tile side in pixels, 0 = coded as one piece
    effort: int  # the encoder's adaptation effort
    adapter_bytes: int
    loop_filter: bool
    loop_filter_bytes: int
    exif_bytes: int  # 0: none carried
    xmp_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def info(data: bytes) -> FileInfo:
    cont, layout = ctr.parse_with_layout(data, max_pixels=ctr.MAX_DIMENSION**2)
    h = cont.header
    meta = (metadata_mod.decode(cont.sections[ctr.Section.METADATA]) if ctr.Section.METADATA in cont.sections
            else metadata_mod.Metadata())
    return FileInfo(
        bytes=len(data),
        width=h.width,
        height=h.height,
        bpp=8 * len(data) / (h.width * h.height),
        colour="gray" if h.colour == ctr.Colour.GRAY else "rgb",
        model_id=h.model_id,
        quality=h.quality,
        adapters=bool(h.flags & ctr.Flags.ADAPTERS),
        alpha=bool(h.flags & ctr.Flags.ALPHA),
        icc=bool(h.flags & ctr.Flags.ICC),
        header_bytes=layout.header,
        overhead_bytes=layout.overhead,
        sections=layout.sections,
        latent_crc=f"{h.latent_crc:08x}",
        version=h.version,
        tile=h.tile_pixels,
        effort=h.effort,
        adapter_bytes=len(cont.sections.get(ctr.Section.ADAPTERS, b"")),
        loop_filter=bool(h.flags & ctr.Flags.LOOP_FILTER),
        loop_filter_bytes=len(cont.sections.get(ctr.Section.LOOP_FILTER, b"")),
        exif_bytes=len(meta.exif or b""),
        xmp_bytes=len(meta.xmp or b""),
    )


__all__ = [
    "DEFAULT_QUALITIES",
    "DEFAULT_QUALITY",
    "DEFAULT_MAX_PIXELS",
    "encode",
    "encode_image",
    "decode",
    "info",
    "FileInfo",
    "get_codec",
]
