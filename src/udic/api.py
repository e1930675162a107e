"""The small Python API the CLI is built on.

>>> import udic.api as udic
>>> data = udic.encode("photo.png", quality=3)
>>> udic.decode(data).image.save("back.png")
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from . import container as ctr
from . import metadata as metadata_mod
from .effort import DEFAULT_EFFORT
from .errors import InputError, UdicError

# Heavy modules (torch through codec, numpy, Pillow) are imported inside the functions
# that need them: `udic info`, `udic --help` and every argument check stay torch-free.
if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from . import pixelcodec
    from .codec import Codec, DecodeResult, EncodeResult
    from .imageio import LoadedImage
    from .ratecontrol import RateTarget, SearchResult

    ImageLike = Image.Image | np.ndarray | str | os.PathLike | bytes | LoadedImage

# The qualities a sweep measures when the default model is not on disk yet, lowest first: its
# seven rates, then near-lossless ±4, ±2 and ±1 (modes.PIXEL_LADDER; 10 = lossless has no finite PSNR).
DEFAULT_QUALITIES = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
DEFAULT_QUALITY = 3.0
DEFAULT_MAX_PIXELS = ctr.DEFAULT_MAX_PIXELS
# Float precision of the analysis/synthesis transforms: "fp32" or "bf16" (about 3x faster
# on CPUs with AMX/AVX-512-bf16, 0.01-0.07 dB lower PSNR).  The entropy-coded integers
# never depend on it.  A parameter of every call, never process state.
PRECISIONS = ("fp32", "bf16")
DEFAULT_PRECISION = "fp32"


class CodecCache:
    """Loaded codecs by (model, device): the one place udic keeps models in memory.

    A ``Codec`` holds the merged weights of its current rate, so one codec must not
    serve two threads at once: the process-wide cache (:func:`get_codec`) belongs to
    the calling thread, and batch workers each take their own cache
    (:meth:`for_thread`), the first of them adopting the process-wide codec.
    """

    def __init__(self, adopt_from: CodecCache | None = None, claimed: set[int] | None = None,
                 lock: threading.Lock | None = None) -> None:
        self.codecs: dict[tuple[str | None, str], Codec] = {}
        self._adopt_from = adopt_from
        self._claimed = claimed
        self._lock = lock

    def get(self, model: str | None = None, device: str = "cpu", progress: Any = True,
            precision: str = DEFAULT_PRECISION) -> Codec:
        """The codec for ``model`` (id, name, path or None = default), loaded on first use."""
        key = (model, device)
        if key not in self.codecs:
            codec = self._load(model, device, progress)
            self.codecs[key] = codec
            self.codecs[(codec.model_id, device)] = codec
        codec = self.codecs[key]
        codec.precision = precision
        return codec

    def _load(self, model: str | None, device: str, progress: Any) -> Codec:
        from .codec import Codec

        if self._adopt_from is None:
            return Codec.load(model, device=device, progress=progress)
        assert self._lock is not None and self._claimed is not None
        with self._lock:  # one model load (or download) at a time
            # The parent's codec is idle during a batch: the first worker takes it.
            codec = self._adopt_from.get(model, device, progress=False)
            if id(codec) in self._claimed:
                codec = Codec.load(model, device=device, progress=False)
            self._claimed.add(id(codec))
        return codec

    def clear(self) -> None:
        self.codecs.clear()

    def worker_caches(self) -> Callable[[], CodecCache]:
        """A factory of per-thread caches that share this one's codecs without sharing a codec."""
        claimed: set[int] = set()
        lock = threading.Lock()
        local = threading.local()

        def for_thread() -> CodecCache:
            cache = getattr(local, "cache", None)
            if cache is None:
                cache = local.cache = CodecCache(self, claimed, lock)
            return cache

        return for_thread


_cache = CodecCache()
_codecs = _cache.codecs  # kept under this name: tests clear it to mimic a fresh process


def default_qualities(model: str | None = None) -> list[float]:
    """A sweep's qualities for ``model`` (None: the default): its rates, then near-lossless
    ±4, ±2 and ±1 (lossless has no finite PSNR to plot)."""
    from . import hub, modes

    top = hub.max_quality(model)
    if top is None:
        return list(DEFAULT_QUALITIES)
    return [float(q) for q in range(int(modes.max_quality(top)))]


def get_codec(model: str | None = None, device: str = "cpu", progress: Any = True,
              precision: str = DEFAULT_PRECISION) -> Codec:
    """A cached codec for ``model`` (id, name, path, or None for the default)."""
    return _cache.get(model, device, progress, precision)


def as_loaded(image: ImageLike, allow_large: bool = False) -> LoadedImage:
    """Any accepted image form as a ``LoadedImage`` (8-bit RGB plus alpha, ICC, metadata)."""
    import numpy as np
    from PIL import Image

    from .imageio import LoadedImage, load_image, png_keeping_metadata

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
    precision: str = DEFAULT_PRECISION,
    choose_mode: bool = True,
    reduce: bool = True,
) -> EncodeResult:
    """Encode; ``effort`` > 0 adapts the encode to this image first (default: the CLI's).

    With ``model`` None and effort ≥ 1 the model is chosen for the image: flat synthetic art
    gets the packaged model trained with synthetic images (``modelchoice``).

    ``tile``: tile side in pixels (0 = whole image, None = tiled only when large);
    ``on_step(phase, step, total, rd_cost)`` reports adaptation steps and tiles;
    ``target`` (a bpp or PSNR) searches the fractional quality that meets it,
    starting from ``quality``.  Qualities above the model's top rate continue into
    near-lossless and lossless (``modes.PIXEL_LADDER``); ``choose_mode`` lets the encoder
    answer with a pixel-coded file when it is no larger and no worse (spec §11); ``reduce``, from
    effort 1, with a learned file coded at half resolution when that is no larger and no worse
    (spec §12).
    """
    loaded = as_loaded(image, allow_large)
    codec = codec_for(loaded, model, effort, device, progress, precision)
    fidelity = fidelity_loader(model, lambda m: get_codec(m, device, progress, precision))
    return encode_with(codec, loaded, quality, effort, time_budget, seed, on_step, tile, target, choose_mode,
                       reduce, fidelity)


def codec_for(loaded: LoadedImage, model: str | None, effort: int, device: str = "cpu", progress: Any = True,
              precision: str = DEFAULT_PRECISION) -> Codec:
    """The codec an encode of this image uses: the user's ``model``, or from effort 1 the one chosen
    for its content (``modelchoice.model_for``): the one rule for the API, the CLI and the bench."""
    from .modelchoice import model_for

    return get_codec(model_for(loaded.rgb, model, effort), device, progress, precision)


def fidelity_loader(model: str | None, get: "Callable[[str], Codec]") -> "Callable[[], Codec] | None":
    """How an encode loads the high-fidelity model when it needs it (``get`` takes a model id), or
    None where the user named a model: the one rule for the API, the CLI and the bench."""
    from .modelchoice import fidelity_model_for

    hifi = fidelity_model_for(model)
    return None if hifi is None else (lambda: get(hifi))


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
    choose_mode: bool = True,
    reduce: bool = True,
    fidelity: "Callable[[], Codec] | None" = None,
) -> EncodeResult:
    """``encode_image`` on a given codec (batch workers each hold their own).

    ``fidelity``: loads the high-fidelity model's codec, tried for a rate target beyond
    ``codec``'s top rate (None: only ``codec`` and the pixel coder).  ``time_budget`` is the
    adaptation time of the whole image: a search's or the mode choice's several adapted encodes
    share it (each gets what the ones before left)."""
    with _image_budget(time_budget):
        return _encode_with(codec, image, quality, effort, time_budget, seed, on_step, tile, target, choose_mode,
                            reduce, fidelity)


# The end of the running encode's --time-budget (perf_counter seconds), for its adapted encodes.
_ADAPT_DEADLINE: "contextvars.ContextVar[float | None]" = contextvars.ContextVar("udic_adapt_deadline", default=None)


@contextlib.contextmanager
def _image_budget(time_budget: float | None) -> "Iterator[None]":
    """One --time-budget for an image's whole encode, from now: every adapted encode inside gets
    what is left (an entry point inside another, e.g. the high-fidelity check, keeps the outer one)."""
    if time_budget is None or _ADAPT_DEADLINE.get() is not None:
        yield
        return
    token = _ADAPT_DEADLINE.set(time.perf_counter() + max(0.0, time_budget))
    try:
        yield
    finally:
        _ADAPT_DEADLINE.reset(token)


def _encode_with(codec: Codec, image: LoadedImage, quality: float, effort: int, time_budget: float | None, seed: int,
                 on_step, tile: int | None, target: RateTarget | None, choose_mode: bool, reduce: bool,  # noqa: ANN001
                 fidelity: "Callable[[], Codec] | None") -> EncodeResult:
    from . import modes

    if target is not None:
        return _encode_to_target(codec, image, quality, effort, time_budget, seed, on_step, tile, target,
                                 choose_mode, reduce, fidelity)
    step = modes.pixel_max_error(quality, codec.max_quality)
    if step is not None:  # the same file as --max-error N / --lossless: the mode says why
        pixels = encode_pixels(image, modes.ladder_error(image, step), effort)
        if fidelity is None or not choose_mode:
            return pixels
        return fidelity_for_pixels(pixels, fidelity, image, quality, effort, time_budget, seed, on_step, tile,
                                   codec.max_quality, lambda: codec)
    result = _encode_learned(codec, image, quality, effort, time_budget, seed, on_step, tile)
    if effort < modes.MIN_CHOICE_EFFORT or not (choose_mode or reduce):
        return result
    lossy = modes.Candidate(result, measure=lambda: _learned_psnr(codec, image, result.data))
    if reduce:
        from .reduced import reduced_if_better

        lossy = reduced_if_better(codec, image, quality, lossy, effort, time_budget, seed, tile)
    if fidelity is not None and _fidelity_applies(image, effort) and _may_saturate(codec, quality, lossy.size, image):
        lossy = _fidelity_if_smaller(codec, fidelity, image, quality, lossy, effort, time_budget, seed, on_step, tile)
    if not choose_mode:
        return lossy.result  # type: ignore[return-value]
    return modes.choose_smaller(image, lossy, effort, quality, on_step).result  # type: ignore[return-value]


def _encode_learned(codec: Codec, image: LoadedImage, quality: float, effort: int, time_budget: float | None,
                    seed: int, on_step, tile: int | None) -> EncodeResult:  # noqa: ANN001
    if effort <= 0:
        on_tile = None if on_step is None else (lambda done, total: on_step("tiles", done, total, math.nan))
        return codec.encode(image, quality, tile=tile, progress=on_tile)
    from .adapt import AdaptConfig, adapt_encode

    deadline = _ADAPT_DEADLINE.get()
    if deadline is not None:  # the image's budget, less what earlier adapted encodes of it spent
        time_budget = max(0.0, deadline - time.perf_counter())
    config = AdaptConfig.for_effort(effort, time_budget=time_budget, seed=seed)
    adapted = adapt_encode(codec, image, quality, config, progress=on_step, tile=tile)
    enc = adapted.encode
    if image.mode == "RGB" and math.isfinite(adapted.mse):
        # The encoder reconstructed its file exactly as a decoder does; for colour sources the
        # decoded RGB is those pixels, so the PSNR needs no second decode (0.45 s of a Kodak encode).
        from .metrics import psnr_from_mse

        enc.psnr = psnr_from_mse(adapted.mse)
    return enc


def _search_learned(codec: Codec, image: LoadedImage, start: float, effort: int, time_budget: float | None,
                    seed: int, on_step, tile: int | None, target: RateTarget, reference) -> "SearchResult":  # noqa: ANN001
    """The learned file of ``codec`` that meets ``target``: a search without adaptation, then
    (effort > 0) re-aimed with it."""
    import numpy as np

    from .ratecontrol import Encoder, refine_adaptive, search_quality

    def decode_rgb(data: bytes) -> np.ndarray:
        return np.asarray(codec.decode_own(data).image.convert("RGB"))

    def learned(q: float, e: int) -> EncodeResult:
        return _encode_learned(codec, image, q, e, time_budget, seed, on_step if e > 0 else None, tile)

    result = search_quality(target, Encoder(lambda q: learned(q, 0), decode_rgb, reference, codec.max_quality),
                            start=start)
    if effort > 0:
        adaptive = Encoder(lambda q: learned(q, effort), decode_rgb, reference, codec.max_quality)
        result = refine_adaptive(target, result, adaptive)
    return result


def _with_fidelity(codec: Codec, hifi: Codec, image: LoadedImage, effort: int, time_budget: float | None,
                   seed: int, on_step, tile: int | None, target: RateTarget, reference,  # noqa: ANN001
                   result: "SearchResult") -> "tuple[Codec, SearchResult]":
    """(codec, result) of the high-fidelity model where it does better than ``result``, the
    default model's answer beyond or near its top rate: a PSNR target met in fewer bytes or
    approached more closely; a size target filled with a file of higher PSNR."""
    if hifi.model_id == codec.model_id:
        return codec, result
    # Its rates start where the default's end: search from two steps under its top (three for a
    # target the default meets, a little lower).  A PSNR is aimed a tolerance above the target, so
    # the file lands on or over it: the near-lossless answers it competes with always do (kodim04
    # at 42 dB had come out at 41.97 dB).
    from .ratecontrol import PSNR_PROMISE_DB, PSNR_TOLERANCE, RateTarget, smallest_at_least

    aim = RateTarget("psnr", target.value + PSNR_TOLERANCE) if target.metric == "psnr" else target
    # The default's file meets the target (near its top rate: over it, or under it by no more than
    # the search's promise), or falls short (beyond it).  A file 0.02 dB under competes on bytes:
    # compared on PSNR it lost to any file over the target, however large (a 34 dB request
    # answered at 36.5 dB from the other model's lowest searched rate).
    met = result.achieved >= target.value - PSNR_PROMISE_DB if target.metric == "psnr" else result.reached
    below_top = 3.0 if met else 2.0
    better = _search_learned(hifi, image, max(0.0, hifi.max_quality - below_top), effort, time_budget, seed, on_step,
                             tile, aim, reference)
    if target.metric == "psnr" and met:
        # The default meets it: the other file must meet it too, in fewer bytes.
        meeting = smallest_at_least(better, target.value)
        wins = meeting is not None and len(meeting.encode.data) < len(result.encode.data)
        if wins:
            better = meeting
    elif target.metric == "psnr":
        wins = better.achieved > result.achieved
    else:
        fits = target.error(better.achieved) <= target.tolerance()
        wins = fits and _learned_psnr(hifi, image, better.encode.data) > _learned_psnr(codec, image, result.encode.data)
    if not wins:
        return codec, result
    if met:
        better.notice = None  # the file meets the request: where the other model's range ends is no news
    if met and target.metric == "psnr":
        why = f"met in fewer bytes than by the default model's file ({len(result.encode.data)} B) near its top rate"
    elif met:
        why = "filled at a higher PSNR than by the default model's file near its top rate"
    else:
        why = f"beyond the default model's top rate ({target.describe(result.achieved)})"
    request = f"--target-{target.metric} {target.value:g}"
    better.encode = _accounted(better.encode, f"encoded with the high-fidelity model {hifi.model_id}: {request} is {why}",
                               request, len(result.encode.data) if met and target.metric == "psnr" else None)
    return hifi, better


# The default's top rates are saturated on photos: there the high-fidelity model's file at the same
# PSNR is smaller (6 Kodak images, effort 1, geometric mean of wide / default bytes: -q 5 0.95, 5.5
# 0.87, 6 0.78; kodim13 0.60 at -q 6), so from one step under the top it is tried as well.
FIDELITY_FROM_TOP = 1.0
# Under the top rate the default saturates only on busy photos.  All 24 Kodak images, effort 1
# (docs/bench/session29-kodak24-q56.md and session30-kodak24-q4.md): at -q 5 the wide file won on
# 8, all but kodim16 (0.4 %) where the default's file had 0.98 bpp or more, and on none of the 13
# under 0.95 bpp, which paid ~15 s of search each for nothing; at -q 4 (0.41-1.10 bpp) it won only
# on kodim13 (1.10 bpp, -12 %; kodim01/05/08 at 0.94-1.01 bpp: no file smaller).  Nearer the top
# it wins on lighter photos too (-q 6, kodim03 at 0.86 bpp: -8 %): from half a step under the top
# it is always tried.
FIDELITY_BELOW_TOP_MIN_BPP = 0.95
FIDELITY_ALWAYS_FROM_TOP = 0.5


def _accounted(enc: EncodeResult, note: str, brief: str, smaller_than: int | None = None) -> EncodeResult:
    """``enc`` with the encoder's account of why this model's file was written: among its notices
    (the terminal) and in the file's ancillary ``note`` section, which ``udic info`` shows (as a
    pixel-coded file's says why it was chosen).  ``brief`` (the request alone) where the note would
    be over modes.NOTE_SHARE of the file, and none where the noted file would no longer be smaller
    than ``smaller_than`` bytes (the file it replaced)."""
    from .modes import NOTE_SHARE

    texts = ([note] if len(note.encode("utf-8")) <= NOTE_SHARE * len(enc.data) else []) + [brief]
    pixels = enc.header.width * enc.header.height
    for text in texts:
        data = ctr.with_note(enc.data, text, max_pixels=pixels)
        if smaller_than is None or len(data) < smaller_than:
            return replace(enc, data=data, notices=enc.notices + [note])
    return replace(enc, notices=enc.notices + [note])


def _may_saturate(codec: Codec, quality: float, size: int, image: LoadedImage) -> bool:
    """Whether the default's file at ``quality`` (``size`` bytes) is where the high-fidelity model
    may beat it: at most FIDELITY_FROM_TOP under its top rate, and heavy enough under half a step
    (FIDELITY_BELOW_TOP_MIN_BPP)."""
    if quality < codec.max_quality - FIDELITY_FROM_TOP:
        return False
    if quality >= codec.max_quality - FIDELITY_ALWAYS_FROM_TOP:
        return True
    return 8 * size / (image.rgb.shape[0] * image.rgb.shape[1]) >= FIDELITY_BELOW_TOP_MIN_BPP


def _fidelity_applies(image: LoadedImage, effort: int) -> bool:
    """Where the high-fidelity model competes with the default's learned file (cheap: no model)."""
    from . import modes

    return (effort >= modes.MIN_CHOICE_EFFORT and image.mode == "RGB" and image.alpha is None
            and _photo_like(image))


def _fidelity_if_smaller(codec: Codec, fidelity: "Callable[[], Codec]", image: LoadedImage, quality: float,
                         lossy: "modes.Candidate", effort: int, time_budget: float | None, seed: int, on_step,  # noqa: ANN001
                         tile: int | None) -> "modes.Candidate":
    """``lossy`` (the default model's -q file), or the high-fidelity model's file at no lower PSNR
    where that is smaller."""
    from . import modes

    hifi = fidelity()
    if hifi.model_id == codec.model_id:
        return lossy
    found = _fidelity_beating(hifi, image, lossy.psnr, lossy.size, 3.0, effort, time_budget, seed, on_step, tile)
    if found is None:
        return lossy
    noted = _accounted(found.encode,
                       f"-q {quality:g}: the high-fidelity model's file ({len(found.encode.data)} B, "
                       f"{found.achieved:.2f} dB) is smaller than the default model's ({lossy.size} B, "
                       f"{lossy.psnr:.2f} dB) and no worse", _FIDELITY_BRIEF.format(quality=quality), lossy.size)
    return modes.Candidate(noted, psnr=found.achieved)


def _learned_psnr(codec: Codec, image: LoadedImage, data: bytes) -> float:
    import numpy as np

    from .metrics import psnr_rgb

    decoded = np.asarray(codec.decode_own(data).image.convert("RGB"))
    return psnr_rgb(image.rgb, decoded)


_FIDELITY_BRIEF = "-q {quality:g}: the high-fidelity model's file, smaller and no worse"

# -q above the top rate asks for a near-lossless file; from effort 1 the high-fidelity model's
# file replaces it where no larger and no worse.  Tried only for files above this many bits
# per pixel: a photo's ±4 file is ~3.1 bpp at 40.7 dB (Kodak), where the model needs ~2.2;
# flat art's near-lossless files are far smaller than any learned file at their PSNR.
FIDELITY_MIN_BPP = 1.5


def fidelity_may_beat(pixels: EncodeResult, image: LoadedImage, effort: int) -> bool:
    """Whether to try the high-fidelity model against a near-lossless -q file (cheap: no model)."""
    from . import modes

    bpp = 8 * len(pixels.data) / (image.rgb.shape[0] * image.rgb.shape[1])
    return (pixels.psnr is not None and math.isfinite(pixels.psnr) and bpp >= FIDELITY_MIN_BPP
            and _fidelity_applies(image, effort))


def _photo_like(image: LoadedImage) -> bool:
    """Where the high-fidelity model can win: not flat synthetic art, whose pixel-coded files it
    never beat (comics, vector art, UI screenshots at 38 and 42 dB: no file smaller, 1.3-2x the
    encode time), while a screenshot of a photo did (gimp_ColorToAlpha-ex5 at 38 dB: -20 %)."""
    from .modelchoice import looks_synthetic

    return not looks_synthetic(image.rgb)


def fidelity_for_pixels(pixels: EncodeResult, fidelity: "Callable[[], Codec]", image: LoadedImage, quality: float,
                        effort: int, time_budget: float | None = None, seed: int = 0, on_step=None,  # noqa: ANN001
                        tile: int | None = None, lossy_top: float | None = None,
                        default: "Callable[[], Codec] | None" = None) -> EncodeResult:
    """``pixels`` (the near-lossless file -q ``quality`` asks for), or the high-fidelity model's
    file where that is smaller and at least as faithful: the mirror of the mode choice, which
    answers a learned request with a pixel-coded file on the same terms.  ``fidelity`` loads the
    model, and is called only where ``fidelity_may_beat``.

    A fraction of the way from the default model's top rate ``lossy_top`` to the first pixel step
    (``default`` loads that model) asks for a file between the two: see ``_fidelity_between``."""
    if not fidelity_may_beat(pixels, image, effort):
        return pixels
    with _image_budget(time_budget):
        return _fidelity_for_pixels(pixels, fidelity, image, quality, effort, time_budget, seed, on_step, tile,
                                    lossy_top, default)


def _fidelity_for_pixels(pixels: EncodeResult, fidelity: "Callable[[], Codec]", image: LoadedImage, quality: float,
                         effort: int, time_budget: float | None, seed: int, on_step, tile: int | None,  # noqa: ANN001
                         lossy_top: float | None, default: "Callable[[], Codec] | None") -> EncodeResult:
    assert pixels.psnr is not None
    if lossy_top is not None and default is not None and 0.0 < quality - lossy_top < 1.0:
        return _fidelity_between(pixels, fidelity, default, image, quality, lossy_top, effort, time_budget, seed,
                                 on_step, tile)
    found = _fidelity_beating(fidelity(), image, pixels.psnr, len(pixels.data), 1.0, effort, time_budget, seed,
                              on_step, tile)
    if found is None:
        return pixels
    return _accounted(found.encode,
                      f"-q {quality:g}: the high-fidelity model's file ({len(found.encode.data)} B, "
                      f"{found.achieved:.2f} dB) is smaller than near-lossless ±{pixels.max_error} "  # type: ignore[attr-defined]
                      f"({len(pixels.data)} B, {pixels.psnr:.2f} dB) and no worse",
                      _FIDELITY_BRIEF.format(quality=quality), len(pixels.data))


def _fidelity_file(hifi: Codec, image: LoadedImage, aim_db: float, below_top: float, effort: int,
                   time_budget: float | None, seed: int, on_step, tile: int | None) -> "SearchResult":  # noqa: ANN001
    """The high-fidelity model's file at ``aim_db``, searched from ``below_top`` steps under its top."""
    from .ratecontrol import RateTarget

    return _search_learned(hifi, image, max(0.0, hifi.max_quality - below_top), effort, time_budget, seed, on_step,
                           tile, RateTarget("psnr", aim_db), image.rgb)


def _fidelity_beating(hifi: Codec, image: LoadedImage, floor_db: float, size: int, below_top: float, effort: int,
                      time_budget: float | None, seed: int, on_step, tile: int | None) -> "SearchResult | None":  # noqa: ANN001
    """The high-fidelity model's smallest searched file that reaches ``floor_db`` in fewer than
    ``size`` bytes (its PSNR recorded), or None: what replaces a file on the terms "smaller and no
    worse".  Aimed a tolerance above the floor; the search's answer may still sit under it, where a
    probe over it can win (``smallest_at_least``)."""
    from .ratecontrol import PSNR_TOLERANCE, smallest_at_least

    found = smallest_at_least(_fidelity_file(hifi, image, floor_db + PSNR_TOLERANCE, below_top, effort, time_budget,
                                             seed, on_step, tile), floor_db)
    if found is None or len(found.encode.data) >= size:
        return None
    found.encode.psnr = found.achieved
    return found


def _fidelity_between(pixels: EncodeResult, fidelity: "Callable[[], Codec]", default: "Callable[[], Codec]",
                      image: LoadedImage, quality: float, lossy_top: float, effort: int, time_budget: float | None,
                      seed: int, on_step, tile: int | None) -> EncodeResult:  # noqa: ANN001
    """-q between the default model's top rate and the first near-lossless step (6 < q < 7) on a
    photo: the high-fidelity model's file at the PSNR that fraction of the way from the top rate's
    file to the near-lossless one (whose PSNR -q 7 answers), where it is smaller than that
    near-lossless file; else the near-lossless file, as before.  Why: on Kodak the default tops out
    at ~34.7 dB and -q 7 is ~40.5 dB in 2.7x the bytes; -q 6.5 was -q 7, and no -q setting had a
    file between, where a photographer's "high quality" lives."""
    from .ratecontrol import PSNR_PROMISE_DB, PSNR_TOLERANCE

    assert pixels.psnr is not None
    codec = default()
    top_file = _encode_learned(codec, image, lossy_top, effort, time_budget, seed, on_step, tile)
    low = _learned_psnr(codec, image, top_file.data)
    if not low < pixels.psnr:
        return pixels
    fraction = quality - lossy_top
    aim = low + fraction * (pixels.psnr - low)
    found = _fidelity_file(fidelity(), image, aim + PSNR_TOLERANCE, 2.0, effort, time_budget, seed, on_step, tile)
    # (an interpolated aim, met as a --target-psnr is: within the search's promise)
    if found.achieved < aim - PSNR_PROMISE_DB or len(found.encode.data) >= len(pixels.data):
        return pixels
    found.encode.psnr = found.achieved
    return _accounted(found.encode,
                      f"-q {quality:g}: the high-fidelity model's file ({len(found.encode.data)} B, "
                      f"{found.achieved:.2f} dB), {fraction:.0%} of the way from the top rate ({low:.2f} dB) to "
                      f"near-lossless ±{pixels.max_error} ({pixels.psnr:.2f} dB, {len(pixels.data)} B)",  # type: ignore[attr-defined]
                      f"-q {quality:g}: the high-fidelity model, between the top rate and near-lossless",
                      len(pixels.data))


def encode_pixels(image: LoadedImage, max_error: int = 0, effort: int = DEFAULT_EFFORT,
                  note: str | None = None) -> EncodeResult:
    """A pixel-coded file: lossless (``max_error`` 0) or every colour sample within
    ±``max_error`` of the source, in its sample units (alpha exact).  Needs no model and never
    imports torch.  ``-q`` above the network's top rate comes here with the ladder's step scaled to
    the source's depth (``modes.ladder_error``: ±4 is ±1,024 on 16-bit samples), so the range is
    the depth's (``pixelcodec.max_error_limit``); the CLI's ``--max-error`` stays 0…255."""
    from . import modes, pixelcodec

    limit = pixelcodec.max_error_limit(modes.sample_depth(image))
    if not 0 <= max_error <= limit:
        from .errors import UsageError

        raise UsageError(f"--max-error {max_error} is out of range 0…{limit}")
    return modes.encode_pixels(image, max_error, max(effort, 0), note=note)  # type: ignore[return-value]


def _encode_to_target(codec: Codec, image: LoadedImage, start: float, effort: int, time_budget: float | None,
                      seed: int, on_step, tile: int | None, target: RateTarget,
                      choose_mode: bool = True, reduce: bool = True,
                      fidelity: "Callable[[], Codec] | None" = None) -> EncodeResult:
    import numpy as np
    from PIL import Image

    reference = np.asarray(Image.fromarray(image.rgb).convert("L").convert("RGB")) if image.mode == "L" else image.rgb
    from . import modes

    result = _search_learned(codec, image, start, effort, time_budget, seed, on_step, tile, target, reference)
    if reduce and effort >= modes.MIN_CHOICE_EFFORT:
        from .reduced import reduced_target

        def decode_rgb(data: bytes) -> np.ndarray:
            return np.asarray(codec.decode_own(data).image.convert("RGB"))

        result = reduced_target(codec, image, target, result, effort, time_budget, seed, tile, decode_rgb, reference)
    beyond = not result.reached and target.error(result.achieved) < 0
    near_top = not beyond and _may_saturate(codec, result.quality, len(result.encode.data), image)
    if fidelity is not None and ((beyond and _photo_like(image)) or (near_top and _fidelity_applies(image, effort))):
        # Beyond the model's top rate the high-fidelity model may meet the target where only the
        # pixel coder did before (Kodak at 42 dB: a learned file ~0.6x the near-lossless one);
        # near it, the default's saturated top rates lose to it (FIDELITY_FROM_TOP).
        codec, result = _with_fidelity(codec, fidelity(), image, effort, time_budget, seed, on_step, tile,
                                       target, reference, result)
    # Beyond the learned top the target is met by the pixel coder at any effort, as -q above
    # the top rate is: the user asked for more than the network gives.
    # (The pixel coder then runs at effort ≥ 1: at 0 it skips the colour merging that makes
    # near-lossless pay on palette images.)
    beyond_top = not result.reached and target.error(result.achieved) < 0
    if choose_mode and (effort >= modes.MIN_CHOICE_EFFORT or beyond_top):
        pixel_effort = max(effort, modes.MIN_CHOICE_EFFORT)
        if target.metric == "psnr" and result.achieved < target.value - 0.1:
            chosen = modes.meet_psnr(image, target.value, pixel_effort, result.achieved, on_step).result
            chosen.notices.append(chosen.note)  # type: ignore[attr-defined]
            return chosen  # type: ignore[return-value]
        if target.metric == "psnr" and effort >= modes.MIN_CHOICE_EFFORT:
            # The network meets the target: a pixel-coded file that meets it in fewer bytes wins.
            lossy = modes.Candidate(result.encode, psnr=result.achieved)
            chosen = modes.smaller_meeting_psnr(image, target.value, lossy, pixel_effort, on_step).result
            if chosen is not result.encode:
                chosen.notices.append(chosen.note)  # type: ignore[attr-defined]
                return chosen  # type: ignore[return-value]
        if target.metric == "bpp":
            budget = int(target.value * image.rgb.shape[0] * image.rgb.shape[1] / 8)
            lossy = modes.Candidate(result.encode, measure=lambda: _learned_psnr(codec, image, result.encode.data))
            chosen = modes.best_within_bytes(image, budget, lossy, pixel_effort, on_step).result
            if chosen is not result.encode:
                if chosen.note:  # type: ignore[attr-defined]
                    chosen.notices.append(chosen.note)  # type: ignore[attr-defined]
                return chosen  # type: ignore[return-value]
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
    precision: str = DEFAULT_PRECISION,
    cache: CodecCache | None = None,
) -> DecodeResult:
    """Decompress .udic bytes; ``result.image`` is a PIL image.

    The model comes from the file's model id; ``model`` (a path, name or id) names
    weights explicitly, e.g. an unregistered .safetensors file the encoder used.
    ``on_tile(done, total)`` reports progress through a tiled image.  ``cache``: where
    the codec comes from (a batch worker's own; default: the process-wide one).
    The container is parsed and checked before any model is loaded, so a damaged
    file is refused without importing torch.
    """
    max_pixels = ctr.MAX_DIMENSION**2 if allow_large else ctr.DEFAULT_MAX_PIXELS
    cont = ctr.parse(data, max_pixels=max_pixels)
    if cont.header.mode == "pixels":  # no model, no torch: the integer pixel coder
        from . import pixelcodec

        return PixelDecodeResult.of(pixelcodec.decode_container(cont))
    codec = (cache or _cache).get(model if model is not None else cont.header.model_id, device, progress, precision)
    return codec.decode(data, max_pixels=max_pixels, progress=on_tile)


@dataclass
class PixelDecodeResult:
    """A decoded pixel-coded file: ``image`` as PIL (8 bits per channel: PIL has no 16-bit
    colour modes) and ``samples``, the exact array at ``bit_depth``."""

    image: Image.Image
    header: ctr.Header
    seconds: float
    samples: np.ndarray
    bit_depth: int
    max_error: int

    @classmethod
    def of(cls, decoded: pixelcodec.PixelDecoded) -> PixelDecodeResult:
        from .imageio import samples_to_pil

        image = samples_to_pil(decoded.samples, decoded.bit_depth, decoded.icc, decoded.metadata)
        return cls(image=image, header=decoded.header, seconds=decoded.seconds, samples=decoded.samples,
                   bit_depth=decoded.bit_depth, max_error=decoded.max_error)


def save_decoded(result: DecodeResult | PixelDecodeResult, dest: str, force: bool = False,
                 format: str | None = None) -> list[str]:
    """Write a decoded image; samples over 8 bits go out as a 16-bit PNG where the format is
    PNG.  Returns notices (e.g. a 16-bit image reduced for an 8-bit format)."""
    from .imageio import _read_metadata, save_image, save_wide_png

    depth = getattr(result, "bit_depth", 8)
    if depth > 8:
        from .imageio import _resolve_format

        if _resolve_format(dest, format) == "PNG":
            meta = _read_metadata(result.image.info, [])  # (EXIF and XMP in bytes, as the 8-bit path has them)
            save_wide_png(result.samples, depth, dest, force=force,  # type: ignore[union-attr]
                          icc=result.image.info.get("icc_profile"), exif=meta.exif, xmp=meta.xmp)
            return []
        save_image(result.image, dest, force=force, format=format)
        return [f"reduced {depth}-bit samples to 8 bits ({_resolve_format(dest, format)} holds 8; use .png)"]
    save_image(result.image, dest, force=force, format=format)
    return []


def _named_model(h: ctr.Header) -> str | None:
    """The model a file names: a pixel-coded file's header holds zeros there, which name none."""
    return h.model_id if h.mode == "learned" else None


@dataclass
class FileInfo:
    """What ``udic info`` reports about a file, without decoding it."""

    bytes: int
    width: int
    height: int
    bpp: float
    colour: str
    model_id: str | None
    quality: float | None  # None for a pixel-coded file
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
    mode: str = "learned"  # "learned", "lossless" or "near-lossless ±N"
    mode_note: str | None = None  # the encoder's account of the choice, when it left one
    bit_depth: int = 8
    pixel_coding: str | None = None  # a pixel-coded file's coder mode (predictive, palette, …)
    coded_size: str | None = None  # reduced resolution (spec §12): the size the network codes, e.g. "384x216"
    max_error: int | None = None  # a pixel-coded file's tolerance (0 = lossless)
    loop_filter_classes: int = 0  # activity classes of the loop filter (1 = one filter; 0 = none)
    # Sections whose payload info could not read ("name: reason"): a decode would refuse the file.
    damaged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, source: str | None = None) -> dict:
        """The ``udic info --json`` record (``input`` first when the source is named); ``mode``
        and ``max_error`` as in encode's and decode's records."""
        record = self.to_dict() | {"mode": self.mode.split(" ±")[0]}
        return ({"input": source} if source is not None else {}) | record


def info(data: bytes) -> FileInfo:
    cont, layout = ctr.parse_with_layout(data, max_pixels=ctr.MAX_DIMENSION**2)
    h = cont.header
    described = ctr.describe_sections(cont)
    mode, bit_depth, pixel_coding, max_error = "learned", 8, None, None
    alpha = bool(h.flags & ctr.Flags.ALPHA)  # a learned file's alpha section
    damaged: list[str] = []
    if h.mode == "pixels":
        px = described["pixels"]
        alpha = px.get("channels") in (2, 4)  # gray + alpha, RGBA: inside the payload (no flag)
        err = int(px.get("max_error", 0))
        mode = "lossless" if err == 0 else f"near-lossless ±{err}"
        max_error = err
        if "error" in px:
            damaged.append(f"pixels: {px['error']}")
            mode, max_error = "pixel-coded", None  # (its tolerance unread)
        elif (px.get("width"), px.get("height")) != (h.width, h.height):  # (refused by a decode)
            damaged.append(f"pixels: the payload holds {px.get('width')}x{px.get('height')}, "
                           f"the header says {h.width}x{h.height}")
        elif (int(px.get("channels", 3)) <= 2) != (h.colour == ctr.Colour.GRAY):
            damaged.append("pixels: the payload's channels disagree with the header's colour mode")
        bit_depth = int(px.get("bit_depth", 8))
        pixel_coding = f"{px.get('mode', '?')}, {px.get('channels', '?')} channels" + (
            f", {px['transform']}" if "transform" in px else "") + (
            f", palette of {px['palette_size']}" if "palette_size" in px else "") + (
            (" (coded in context)" if px.get("palette_in_context") else " (coded)" if px.get("palette_coded") else "")) + (
            f", free copies {px['free_copies']}" if px.get("free_copies", "off") != "off" else "") + (
            ", literal cache" if px.get("literal_cache") else "") + (
            ", palette in order of first use" if px.get("fresh_literals") else "") + (
            ", literals by the colour above" if px.get("literals_above") else "") + (
            ", row contexts" if px.get("row_contexts") else "") + (
            f", {px['long_matches']} long matches" if px.get("long_matches") else "") + (
            f", {px['bands']} bands" if px.get("bands", 1) > 1 else "")
    meta = metadata_mod.Metadata()
    if ctr.Section.METADATA in cont.sections:
        try:
            meta = metadata_mod.decode(cont.sections[ctr.Section.METADATA])
        except UdicError as exc:  # info shows what it can, as for every other section
            damaged.append(f"metadata: {exc}")
    coded_size = None
    if ctr.Section.RESAMPLE in cont.sections:
        from .sections import DecodeContext
        from .sections import resample as resample_section  # numpy-free, like the rest of info

        try:
            factor = resample_section.decode(cont.sections[ctr.Section.RESAMPLE], DecodeContext(h.height, h.width))
        except UdicError as exc:
            damaged.append(f"resample: {exc}")
        else:
            height, width = resample_section.coded_size(h.height, h.width, factor)
            coded_size = f"{width}x{height}"
    return FileInfo(
        bytes=len(data),
        width=h.width,
        height=h.height,
        bpp=8 * len(data) / (h.width * h.height),
        colour="gray" if h.colour == ctr.Colour.GRAY else "rgb",
        model_id=_named_model(h),
        quality=h.quality if h.mode == "learned" else None,  # type: ignore[arg-type]
        adapters=bool(h.flags & ctr.Flags.ADAPTERS),
        alpha=alpha,
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
        mode=mode,
        mode_note=described.get("note", {}).get("text") or None,
        loop_filter_classes=int(described.get("loop_filter", {}).get("classes", 0)),
        bit_depth=bit_depth,
        pixel_coding=pixel_coding,
        coded_size=coded_size,
        max_error=max_error,
        damaged=damaged,
    )


@dataclass
class EncodeRecord:
    """One encoded file as the CLI reports it: the result plus where it came from and went."""

    input: str
    output: str
    result: EncodeResult
    effort: int
    seconds: float
    psnr: float | None = None  # dB against the source (inf: exact); None when not measured (--quiet)

    def to_json(self) -> dict:
        h = self.result.header
        flags = ctr.Flags(h.flags)
        psnr = None if self.psnr is None else "inf" if math.isinf(self.psnr) else round(self.psnr, 3)
        return {
            "input": self.input, "output": self.output, "bytes": len(self.result.data),
            "bpp": round(self.result.bpp, 5), "psnr": psnr, "width": h.width, "height": h.height,
            "quality": h.quality if h.mode == "learned" else None,
            "mode": "learned" if h.mode == "learned" else getattr(self.result, "mode", "lossless"),
            "max_error": getattr(self.result, "max_error", None),
            "model_id": _named_model(h), "effort": self.effort, "tile": h.tile_pixels, "seconds": round(self.seconds, 3),
            "adapters": bool(flags & ctr.Flags.ADAPTERS), "metadata": bool(flags & ctr.Flags.METADATA),
            "notices": list(self.result.notices),
        }


@dataclass
class DecodeRecord:
    """One decoded file as the CLI reports it."""

    input: str
    output: str
    result: DecodeResult

    def to_json(self) -> dict:
        h = self.result.header
        return {"input": self.input, "output": self.output, "width": h.width, "height": h.height,
                "quality": h.quality if h.mode == "learned" else None, "mode": decoded_mode(self.result),
                "max_error": getattr(self.result, "max_error", None),
                "model_id": _named_model(h), "seconds": round(self.result.seconds, 3)}


def decoded_mode(result: DecodeResult | PixelDecodeResult) -> str:
    """"learned", "lossless" or "near-lossless": the names encode's and info's records use."""
    if result.header.mode == "learned":
        return "learned"
    return "lossless" if result.max_error == 0 else "near-lossless"  # type: ignore[union-attr]


def encoded_psnr(image: LoadedImage, result: EncodeResult, codec: Codec | None = None) -> float:
    """PSNR (dB, colour channels; inf when exact) of an encode's file against its source.

    Pixel-coded files carry theirs from the encoder (which decodes its own payload); learned
    ones carry the mode choice's measurement when it made one, else are decoded now with
    ``codec`` (the one that encoded them).  Kept on the result.
    """
    if result.psnr is None:
        assert codec is not None, "a learned file needs its codec to be measured"
        result.psnr = _learned_psnr(codec, image, result.data)
    return result.psnr


def psnr(reference: LoadedImage, data: bytes, cache: CodecCache | None = None) -> float:
    """PSNR (dB, RGB) of ``data`` decoded against the image it was made from."""
    import numpy as np

    decoded = np.asarray(decode(data, progress=False, cache=cache).image.convert("RGB"), dtype=np.float64)
    ref = reference.rgb.astype(np.float64)
    if ref.ndim == 2:
        ref = np.repeat(ref[..., None], 3, axis=2)
    mse = float(np.mean((decoded - ref) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


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
    "codec_for",
    "CodecCache",
    "EncodeRecord",
    "DecodeRecord",
]
