"""Encode and decode images to and from .udic bytes (bitstream_spec.md §4–5).

The float networks (analysis, synthesis) may run on any device; everything the
entropy coder's probabilities depend on runs as the exact integer hyper-synthesis,
so the integers decoded from a file are the same everywhere.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import adapters as adapters_mod
from . import container as ctr
from . import loopfilter, resample
from . import sections
from .entropy import tables_from_matrix
from .errors import ContainerError, ModelError, UdicError, UsageError
from .geometry import (  # noqa: F401 (re-exported: callers import the geometry from here)
    ANALYSIS_HALO,
    AUTO_TILE_PIXELS,
    DEFAULT_TILE,
    HYPER_STRIDE,
    LATENT_STRIDE,
    MAX_TILE,
    MAX_WINDOW_PIXELS,
    PAD_MULTIPLE,
    SYNTHESIS_HALO,
    choose_tile,
    padded_size,
    window_pixels,
)
from .imageio import LoadedImage, crop, pad_to_multiple, to_pil
from .latent_codecs import EntropyParams, LatentCodec, crc_integers, latent_codec_class
from .modelfile import LoadedWeights
from .models import IntegerHyperSynthesis
from .rate import Rate
from .sections.icc import MAX_ICC_BYTES, inflate_icc  # noqa: F401 (re-exported)
from .tiling import Window, tile_windows

TileProgress = Callable[[int, int], None]  # (tiles done, tiles in total)


@dataclass
class EncodeResult:
    data: bytes
    header: ctr.Header
    bits_hyper: int
    bits_latent: int
    seconds: float
    notices: list[str] = field(default_factory=list)
    # The latents the decoder will reconstruct (residuals + means), for encoders that
    # go on to synthesise them (adaptation) without re-running the hyper-synthesis.
    y_hat: torch.Tensor | None = field(default=None, repr=False)
    rate: Rate | None = None  # the rate coded (the header's, as a Rate of the model)
    psnr: float | None = None  # dB, once the encoder has decoded its own file (the mode choice)

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.header.width * self.header.height)


@dataclass
class DecodeResult:
    image: Image.Image
    header: ctr.Header
    seconds: float


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but CUDA is not available")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r} (use cpu, cuda or auto)")
    return torch.device(device)


def _crc_integers(*arrays: np.ndarray) -> int:
    """Deprecated alias of ``latent_codecs.crc_integers``."""
    return crc_integers(*arrays)


_ONE_THREAD_LOCK = threading.Lock()
_one_thread_users = 0
_threads_before = 1


@contextmanager
def _exact_windows(device: torch.device) -> Iterator[None]:
    """Synthesise with one intra-op thread on the CPU, deterministic kernels on CUDA.

    oneDNN picks its (de)convolution kernels by shape *and* thread count; for some
    window shapes (e.g. 12×16 latents) two threads split a reduction and round
    differently than one, so a tiled decode's pixels depended on --threads (issue 15);
    a whole image's shapes can do the same.  One thread gives every window the same
    arithmetic in every run.  The thread count is the process's: decodes on a parallel
    batch's threads share it, so the first to enter sets it and the last to leave restores
    it (one restoring it while another synthesised gave that one more threads mid-image).
    On CUDA, cuDNN's transposed convolutions are not deterministic unless asked to be.
    """
    global _one_thread_users, _threads_before
    if device.type == "cuda":
        with deterministic_cuda():
            yield
        return
    if device.type != "cpu":
        yield
        return
    with _ONE_THREAD_LOCK:
        if _one_thread_users == 0:
            _threads_before = torch.get_num_threads()
            if _threads_before != 1:
                torch.set_num_threads(1)
        _one_thread_users += 1
    try:
        yield
    finally:
        with _ONE_THREAD_LOCK:
            _one_thread_users -= 1
            if _one_thread_users == 0 and _threads_before != 1:
                torch.set_num_threads(_threads_before)


_cuda_users = 0
_cuda_flags_before = (False, False)


@contextmanager
def deterministic_cuda() -> Iterator[None]:
    """cuDNN's deterministic kernels (and no autotuning) while any thread asks for them: the
    flags are the process's, so the first to enter sets them and the last to leave restores
    them (a worker restoring them while another synthesised would turn them off under it)."""
    global _cuda_users, _cuda_flags_before
    cudnn = torch.backends.cudnn
    with _ONE_THREAD_LOCK:
        if _cuda_users == 0:
            _cuda_flags_before = (cudnn.deterministic, cudnn.benchmark)
            cudnn.deterministic, cudnn.benchmark = True, False
        _cuda_users += 1
    try:
        yield
    finally:
        with _ONE_THREAD_LOCK:
            _cuda_users -= 1
            if _cuda_users == 0:
                cudnn.deterministic, cudnn.benchmark = _cuda_flags_before


def _out_of_memory(height: int, width: int) -> UdicError:
    return UdicError(f"not enough memory to decode {width}x{height}")


class Codec:
    """One loaded model, ready to encode and decode at any of its rates."""

    def __init__(
        self,
        weights: LoadedWeights,
        model_id: str,
        device: torch.device | str = "cpu",
        precision: str = "fp32",
    ) -> None:
        self.device = torch.device(device)
        # The float transforms may run in bf16 (AMX): pixels stay deterministic on one
        # machine; the entropy-coded integers never depend on it.
        self.precision = precision  # "fp32" or "bf16"
        # channels_last: oneDNN's fast path for the (de)convolutions, 3× faster here.
        self.model = weights.model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.model_id = model_id
        self.metadata = weights.metadata
        self.config = self.model.config
        self.latent_codec: LatentCodec = latent_codec_class(self.config.latent_codec).from_model(
            self.config, tables_from_matrix(weights.z_pmf, weights.z_offsets), self.model)
        self._rate: Rate | None = None
        self._hyper: IntegerHyperSynthesis | None = None
        self.select(Rate(0, self.config.num_rates))

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model: str | None = None,
        device: str = "cpu",
        progress: bool = True,
        allow_download: bool = True,
    ) -> "Codec":
        from . import hub, modelfile

        resolved = hub.resolve(model, progress=progress, allow_download=allow_download)
        dev = resolve_device(device)
        weights = modelfile.load(resolved.path, device="cpu")
        return cls(weights, resolved.entry.id, dev)

    # ---- rates ---------------------------------------------------------------------------
    @property
    def max_quality(self) -> float:
        return float(self.config.num_rates - 1)

    def rate(self, quality: "float | Rate") -> Rate:
        """A user's quality as a Rate of this model (validated and rounded once, UsageError)."""
        return Rate.from_quality(quality, self.config.num_rates)

    @property
    def hyper(self) -> IntegerHyperSynthesis:
        """The integer networks of the selected rate (handed to the latent codec)."""
        assert self._hyper is not None
        return self._hyper

    @property
    def selected_rate(self) -> Rate:
        assert self._rate is not None
        return self._rate

    def select(self, rate: Rate) -> None:
        """Merge the LoRA deltas of ``rate`` (spec §4) and build its integer hyper-synthesis."""
        if rate == self._rate:
            return
        self.model.merge_rate(rate)
        self._hyper = self.latent_codec.integer_networks(self.model, rate.lora_mix())
        self._rate = rate

    def _select_rate(self, rate: int) -> None:
        """Deprecated: ``select(Rate(stored, num_rates))``."""
        self.select(Rate(int(rate), self.config.num_rates))

    def _rate_from_quality(self, quality: float) -> int:
        """Deprecated: ``rate(quality).stored``."""
        return self.rate(quality).stored

    # ---- the latent codec's view -----------------------------------------------------------
    @property
    def z_coder(self):  # noqa: ANN201 (deprecated alias)
        return self.latent_codec.z_coder

    @property
    def y_coder(self):  # noqa: ANN201 (deprecated alias; hyperprior codecs only)
        return self.latent_codec.y_coder  # type: ignore[attr-defined]

    def entropy_params(self, z_symbols: np.ndarray, y: np.ndarray | None = None) -> EntropyParams:
        """The latents' exact entropy parameters at the selected rate (a context model's
        depend on the latents ``y`` too)."""
        return self.latent_codec.entropy_params(z_symbols, self.hyper, y)

    def _entropy_params(self, z_symbols: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """Deprecated: ``entropy_params(z)`` as (indexes, means)."""
        params = self.entropy_params(z_symbols)
        return params.indexes, params.means

    # ---- encode --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self,
        image: LoadedImage,
        quality: "float | Rate" = 3.0,
        adapter_set: adapters_mod.AdapterSet | None = None,
        latents: tuple[np.ndarray, np.ndarray] | None = None,
        tile: int | None = None,
        effort: int = 0,
        progress: TileProgress | None = None,
        keep_latents: bool = False,
        loop_filter: loopfilter.LoopFilter | None = None,
    ) -> EncodeResult:
        """Compress ``image``.  ``latents`` (z symbols, y) lets adaptation supply refined ones.

        ``quality``: a float (validated and rounded to the stored 1/256 unit) or a Rate;
        ``tile``: pixels per tile side (0 = whole image, ``None`` = automatic, tiled
        above AUTO_TILE_PIXELS); ``effort`` is recorded in the header for ``udic info``;
        ``keep_latents`` returns the decoder's ŷ in the result; ``loop_filter`` is sent
        for the decoder to apply to its output (spec §8).
        """
        t0 = time.perf_counter()
        rate = self.rate(quality)
        self.select(rate)
        height, width = image.rgb.shape[:2]
        tile = choose_tile(height, width, tile)
        if latents is None:
            y, z_symbols = self.analyse(image.rgb, rate, tile, progress)
        else:
            z_symbols, y = latents
        coded = self.latent_codec.encode(y, z_symbols, self.hyper)
        payloads = sections.encode_sections({
            "hyperlatents": coded.z_bytes,
            "latents": coded.y_bytes,
            "adapters": adapter_set,
            "loop_filter": loop_filter,
            "alpha": image.alpha,
            "icc": image.icc,
            "metadata": image.metadata,
        })
        flags = ctr.flags_for(payloads)
        header = ctr.Header(
            width=width,
            height=height,
            colour=ctr.Colour.GRAY if image.mode == "L" else ctr.Colour.RGB,
            flags=flags,
            model_id=self.model_id,
            rate=rate.stored,
            latent_crc=coded.crc,
            tile=tile // ctr.TILE_UNIT,
            effort=effort,
            version=max(ctr.VERSION, self.latent_codec.min_version,
                        ctr.FILTER_CLASSES_VERSION if loop_filter is not None and loop_filter.thresholds else 0),
        )
        data = ctr.write(ctr.Container(header=header, sections={ctr.Section(t): p for t, p in payloads.items()}))
        return EncodeResult(
            data=data,
            header=header,
            bits_hyper=8 * len(coded.z_bytes),
            bits_latent=8 * len(coded.y_bytes),
            seconds=time.perf_counter() - t0,
            notices=list(image.notices),
            y_hat=coded.y_hat if keep_latents else None,
            rate=rate,
        )

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def image_tensor(self, array: np.ndarray) -> torch.Tensor:
        """8-bit H×W×3 pixels → the networks' (1, 3, H, W) input in [0, 1] on the codec's device."""
        x = torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1)[None]
        x = x.to(self.device, torch.float32).div_(255.0)
        return x.contiguous(memory_format=torch.channels_last)

    _tensor = image_tensor  # deprecated private name

    @torch.no_grad()
    def analyse(
        self, rgb: np.ndarray, quality: "float | Rate", tile: int = 0, progress: TileProgress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gained latents y (float, C×h×w) and hyper-latent symbols for an RGB array.

        With ``tile`` > 0 the analysis runs in haloed tiles, so memory stays bounded.
        """
        rate = self.rate(quality)
        self.select(rate)
        gain = self.model.gains(rate.quality)[0].to(self.device).view(1, -1, 1, 1)
        padded = pad_to_multiple(rgb, PAD_MULTIPLE)
        hp, wp = padded.shape[:2]
        if not tile:
            with self._autocast():
                y = self.model.g_a(self.image_tensor(padded)).float() * gain
        else:
            y = torch.empty(1, self.config.M, hp // LATENT_STRIDE, wp // LATENT_STRIDE, device=self.device)
            windows = tile_windows(hp // LATENT_STRIDE, wp // LATENT_STRIDE, tile // LATENT_STRIDE,
                                   ANALYSIS_HALO // LATENT_STRIDE)
            for done, win in enumerate(windows, 1):
                rows, cols = win.outer_slices(LATENT_STRIDE)
                with self._autocast():
                    part = self.model.g_a(self.image_tensor(padded[rows, cols])).float() * gain
                core_rows, core_cols = win.core_in_outer()
                rows, cols = win.core_slices()
                y[:, :, rows, cols] = part[:, :, core_rows, core_cols]
                if progress is not None:
                    progress(done, len(windows))
        z = self.model.h_a(y)
        z_symbols = torch.round(z)[0].to("cpu", torch.int64).numpy()
        return y[0].float().cpu().numpy(), z_symbols

    # ---- decode --------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, data: bytes, max_pixels: int | None = None,
               progress: TileProgress | None = None) -> DecodeResult:
        """``max_pixels``: the largest image accepted (default: the container's limit for files
        from elsewhere)."""
        t0 = time.perf_counter()
        cont = ctr.parse(data, max_pixels=ctr.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
        header = cont.header
        if header.model_id != self.model_id:
            raise ModelError(f"file was made with model {header.model_id}, not the loaded {self.model_id}")
        # A latent codec newer than the base format needs a file of its version (§4: channel-conditional
        # latents from 6); the hyperprior's own files go back to version 1.
        if self.latent_codec.min_version > ctr.VERSION and header.version < self.latent_codec.min_version:
            raise ContainerError(f"a version-{header.version} file cannot hold this model's latents "
                                 f"(version {self.latent_codec.min_version} or later)")
        rate = Rate.from_stored(header.rate, self.config.num_rates)
        coded = coded_header(cont)  # what the network decodes: smaller than the output at reduced resolution
        window = window_pixels(coded.height, coded.width, coded.tile_pixels)
        if window > MAX_WINDOW_PIXELS:
            raise ContainerError(f"file asks for a {window / 1e6:.0f} MP synthesis window, over the "
                                 f"{MAX_WINDOW_PIXELS / 1e6:.1f} MP limit")
        z_shape, y_shape = self.latent_shapes(coded)
        # What the header claims must fit in what the sections can hold: refused before
        # anything of the claimed size is allocated (spec §9 step 3).
        self.latent_codec.check_capacity(cont.section(ctr.Section.HYPERLATENTS), cont.section(ctr.Section.LATENTS),
                                         z_shape, y_shape)
        self.select(rate)
        # The small side sections first: a corrupt one is refused before the expensive part.
        context = sections.DecodeContext(header.height, header.width,
                                         tuple(s.channels for s in self.model.g_s.slots), header.version)
        side = sections.decode_side_sections({int(k): v for k, v in cont.sections.items()}, context)
        try:
            _, _, y_hat = self._decode_latents(cont, rate)
            rgb = self.synthesise(y_hat, rate, side.get("adapters"), tile=coded.tile_pixels, progress=progress)
            rgb = crop(rgb, coded.height, coded.width)
            if "loop_filter" in side:
                rgb = loopfilter.apply(rgb, side["loop_filter"])
            if "resample" in side:
                rgb = resample.upsample(rgb, header.height, header.width)
        except MemoryError:
            raise _out_of_memory(header.height, header.width) from None
        except RuntimeError as exc:  # torch's allocator failing on a legitimately huge image
            if "alloc" in str(exc).lower() or "memory" in str(exc).lower():
                raise _out_of_memory(header.height, header.width) from None
            raise
        mode = "L" if header.colour == ctr.Colour.GRAY else "RGB"
        image = to_pil(rgb, mode, side.get("alpha"), side.get("icc"), side.get("metadata"))
        return DecodeResult(image=image, header=header, seconds=time.perf_counter() - t0)

    def latent_shapes(self, header: ctr.Header) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """Latent shapes of a header at the size the network codes (``coded_header``)."""
        hp, wp = padded_size(header.height, header.width)
        c = self.config
        return (c.N, hp // HYPER_STRIDE, wp // HYPER_STRIDE), (c.M, hp // LATENT_STRIDE, wp // LATENT_STRIDE)

    def _decode_latents(self, cont: ctr.Container, rate: Rate) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        self.select(rate)
        z_shape, y_shape = self.latent_shapes(coded_header(cont))
        out = self.latent_codec.decode(cont.section(ctr.Section.HYPERLATENTS), cont.section(ctr.Section.LATENTS),
                                       z_shape, y_shape, self.hyper, cont.header.latent_crc)
        return out.z_symbols, out.residuals, out.y_hat

    def decode_own(self, data: bytes) -> DecodeResult:
        """Decodes a file this process just encoded (a search's probe, the mode choice's measure):
        its image was admitted by the input's own limit (``--allow-large``), so the limit for
        files from elsewhere is not applied again."""
        return self.decode(data, max_pixels=ctr.MAX_DIMENSION**2)

    def decode_integers(self, cont: ctr.Container) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """Entropy-decode z and the latents' integers, verify the latent checksum; returns
        (z symbols, coded integers, means) (ŷ = integers + means for the hyperprior)."""
        rate = Rate.from_stored(cont.header.rate, self.config.num_rates)
        z_symbols, residuals, y_hat = self._decode_latents(cont, rate)
        return z_symbols, residuals, y_hat - torch.from_numpy(residuals.astype(np.float32))

    @torch.no_grad()
    def synthesise(
        self,
        y_hat: torch.Tensor,
        quality: "float | Rate",
        adapter_set: adapters_mod.AdapterSet | None = None,
        tile: int = 0,
        progress: TileProgress | None = None,
    ) -> np.ndarray:
        """Latents ŷ (C×h×w) → padded 8-bit RGB (H×W×3); in haloed tiles if ``tile`` > 0 (spec §4)."""
        q = quality.quality if isinstance(quality, Rate) else quality
        _, inv_gain = self.model.gains(q)
        inv_gain = inv_gain.to(self.device).view(1, -1, 1, 1)
        _, h, w = y_hat.shape
        windows = tile_windows(h, w, tile // LATENT_STRIDE, SYNTHESIS_HALO) if tile else None
        adapters_mod.install(self.model.g_s.slots, adapter_set, self.device)
        try:
            with _exact_windows(self.device):
                if windows is None:
                    return self._synthesise_window(y_hat[None].to(self.device) * inv_gain)
                out = np.empty((h * LATENT_STRIDE, w * LATENT_STRIDE, 3), dtype=np.uint8)
                self._synthesise_windows(y_hat, inv_gain, windows, out, progress)
                return out
        finally:
            adapters_mod.install(self.model.g_s.slots, None, self.device)

    def _synthesise_windows(self, y_hat: torch.Tensor, inv_gain: torch.Tensor, windows: list[Window],
                            out: np.ndarray, progress: TileProgress | None) -> None:
        """Each haloed window's core into ``out`` (spec §4.1)."""
        for done, win in enumerate(windows, 1):
            rows, cols = win.outer_slices()
            part = self._synthesise_window(y_hat[None, :, rows, cols].to(self.device) * inv_gain)
            core_rows, core_cols = win.core_in_outer(LATENT_STRIDE)
            rows, cols = win.core_slices(LATENT_STRIDE)
            out[rows, cols] = part[core_rows, core_cols]
            if progress is not None:
                progress(done, len(windows))

    def _synthesise_window(self, y: torch.Tensor) -> np.ndarray:
        y = y.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            x_hat = self.model.g_s(y).float()
        x = x_hat[0].clamp(0, 1).mul(255).round().to(torch.uint8)
        return x.permute(1, 2, 0).cpu().numpy()


def coded_header(cont: ctr.Container) -> ctr.Header:
    """The header as the network sees it: at reduced resolution (a resample section, spec §12)
    the latents, tiles and loop filter belong to the coded size, not the output's."""
    payload = cont.sections.get(ctr.Section.RESAMPLE)
    if payload is None:
        return cont.header
    factor = sections.resample.decode(payload, sections.DecodeContext(cont.header.height, cont.header.width))
    height, width = resample.coded_size(cont.header.height, cont.header.width, factor)
    return dataclasses.replace(cont.header, height=height, width=width)


def codec_for_file(path: Path, device: str = "cpu") -> Codec:
    """A codec whose weights come from a file path (tests, training exports)."""
    from . import hub, modelfile

    weights = modelfile.load(path)
    return Codec(weights, hub.model_id_for_file(path), resolve_device(device))
