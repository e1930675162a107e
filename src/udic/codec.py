"""Encode and decode images to and from .udic bytes (bitstream_spec.md §4–5).

The float networks (analysis, synthesis) may run on any device; everything the
entropy coder's probabilities depend on runs as the exact integer hyper-synthesis,
so the integers decoded from a file are the same everywhere.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import adapters as adapters_mod
from . import container as ctr
from . import loopfilter
from . import metadata as metadata_mod
from .alpha import decode_alpha, encode_alpha
from .entropy import IndexedCoder, gaussian_tables, tables_from_matrix
from .errors import ContainerError, ModelError, UsageError
from .imageio import LoadedImage, crop, pad_to_multiple, to_pil
from .modelfile import LoadedWeights
from .models import FRAC_BITS, IntegerHyperSynthesis, rate_mix, scale_indexes, scale_table
from .tiling import tile_windows

PAD_MULTIPLE = 64
LATENT_STRIDE = 16  # pixels per latent position
# Images whose padded area exceeds AUTO_TILE_PIXELS are coded in tiles of DEFAULT_TILE
# pixels, which bounds memory (a whole-image synthesis of 24 MP would need ~20 GB).
DEFAULT_TILE = 1024
AUTO_TILE_PIXELS = 2048 * 2048
MAX_TILE = 255 * ctr.TILE_UNIT
# The largest area synthesised in one piece (a whole image or one tile), encoder and
# decoder alike: ~0.85 GB of activations per megapixel, so 4096² needs ~14 GB.  A file
# asking for more is refused before anything is allocated (spec §9).
MAX_WINDOW_PIXELS = 4096 * 4096
# Halos cover the receptive fields with margin: g_a's residual network sees ±30 px,
# g_s's deconvolutions ±2 latent positions.
ANALYSIS_HALO = 64  # pixels
SYNTHESIS_HALO = 4  # latent positions

TileProgress = Callable[[int, int], None]  # (tiles done, tiles in total)


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE


def choose_tile(height: int, width: int, tile: int | None = None) -> int:
    """Tile side in pixels for an image (0 = whole image); ``None`` picks automatically."""
    hp, wp = padded_size(height, width)
    if tile is None:
        tile = DEFAULT_TILE if hp * wp > AUTO_TILE_PIXELS else 0
    if tile < 0 or tile % ctr.TILE_UNIT or tile > MAX_TILE:
        raise UsageError(f"tile size must be 0 or a multiple of {ctr.TILE_UNIT} up to {MAX_TILE}, got {tile}")
    tile = 0 if tile >= max(hp, wp) else tile
    window = window_pixels(height, width, tile)
    if window > MAX_WINDOW_PIXELS:
        raise UsageError(f"tiles of {tile or 'the whole image'} would synthesise "
                         f"{window / 1e6:.0f} MP at once, over the "
                         f"{MAX_WINDOW_PIXELS / 1e6:.1f} MP limit (use --tile {DEFAULT_TILE})")
    return tile


def window_pixels(height: int, width: int, tile: int) -> int:
    """Area synthesised in one piece for this tile side (0 = the whole padded image)."""
    hp, wp = padded_size(height, width)
    return hp * wp if tile == 0 else min(tile, hp) * min(tile, wp)


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


MAX_ICC_BYTES = 16 << 20


def inflate_icc(payload: bytes) -> bytes:
    """zlib-inflate an ICC section, refusing more than MAX_ICC_BYTES (no zlib bombs)."""
    return ctr.inflate_section(payload, MAX_ICC_BYTES, "ICC")


def _crc_integers(*arrays: np.ndarray) -> int:
    crc = 0
    for a in arrays:
        if a.size and np.abs(a).max() >= 2**31:
            raise ValueError("latent values must fit in 32 bits (spec §2)")
        crc = zlib.crc32(np.ascontiguousarray(a, dtype="<i4").tobytes(), crc)
    return crc


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
        self.z_coder = IndexedCoder(tables_from_matrix(weights.z_pmf, weights.z_offsets))
        self.y_coder = IndexedCoder(gaussian_tables(tuple(scale_table())))
        self._rate: int | None = None
        self._hyper: IntegerHyperSynthesis | None = None
        self._select_rate(0)

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

    def _select_rate(self, rate: int) -> None:
        """Merge the LoRA deltas for a stored rate value (quality × 256), spec §4."""
        if rate == self._rate:
            return
        self.model.merge_rate(rate)
        self._hyper = IntegerHyperSynthesis(self.model.h_s, rate_mix(rate, self.config.num_rates))
        self._rate = rate

    def _rate_from_quality(self, quality: float) -> int:
        if not (isinstance(quality, (int, float)) and math.isfinite(quality)):
            raise UsageError(f"quality must be a number, got {quality!r}")
        if not 0 <= quality <= self.max_quality:
            raise UsageError(f"quality {quality:g} out of range 0…{self.max_quality:g}")
        return int(round(quality * 256))

    # ---- the two halves of the hyperprior ------------------------------------------------
    def _entropy_params(self, z_symbols: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """Scale-table indexes and means of every latent, from the integer hyper-synthesis.

        Computed in bands of rows (exactly equal to the whole-image result) so a huge
        image never holds the 2M-channel fixed-point output at once.
        """
        assert self._hyper is not None
        M = self.config.M
        _, h, w = z_symbols.shape
        k = IntegerHyperSynthesis.UPSAMPLE
        indexes = np.empty((M, h * k, w * k), dtype=np.int64)
        means = torch.empty((M, h * k, w * k), dtype=torch.float32)
        for top, bottom, fixed in self._hyper.bands(torch.from_numpy(z_symbols)[None]):
            indexes[:, top:bottom] = scale_indexes(fixed[0, :M])
            means[:, top:bottom] = (fixed[0, M:].to(torch.float64) / 2**FRAC_BITS).to(torch.float32)
        return indexes, means

    # ---- encode --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self,
        image: LoadedImage,
        quality: float = 3.0,
        adapter_set: adapters_mod.AdapterSet | None = None,
        latents: tuple[np.ndarray, np.ndarray] | None = None,
        tile: int | None = None,
        effort: int = 0,
        progress: TileProgress | None = None,
        keep_latents: bool = False,
        loop_filter: loopfilter.LoopFilter | None = None,
    ) -> EncodeResult:
        """Compress ``image``.  ``latents`` (z symbols, y) lets adaptation supply refined ones.

        ``tile``: pixels per tile side (0 = whole image, ``None`` = automatic, tiled
        above AUTO_TILE_PIXELS); ``effort`` is recorded in the header for ``udic info``;
        ``keep_latents`` returns the decoder's ŷ in the result; ``loop_filter`` is sent
        for the decoder to apply to its output (spec §8).
        """
        t0 = time.perf_counter()
        rate = self._rate_from_quality(quality)
        q = rate / 256
        self._select_rate(rate)
        height, width = image.rgb.shape[:2]
        tile = choose_tile(height, width, tile)
        if latents is None:
            y, z_symbols = self.analyse(image.rgb, q, tile, progress)
        else:
            z_symbols, y = latents
        indexes, means = self._entropy_params(z_symbols)
        residuals = np.rint(y - means.numpy()).astype(np.int64)
        z_idx = np.broadcast_to(np.arange(z_symbols.shape[0])[:, None, None], z_symbols.shape)
        z_bytes = self.z_coder.encode(z_symbols, z_idx)
        y_bytes = self.y_coder.encode(residuals, indexes)
        flags = ctr.Flags(0)
        sections: dict[ctr.Section, bytes] = {
            ctr.Section.HYPERLATENTS: z_bytes,
            ctr.Section.LATENTS: y_bytes,
        }
        if adapter_set is not None and adapter_set.adapters:
            flags |= ctr.Flags.ADAPTERS
            sections[ctr.Section.ADAPTERS] = adapters_mod.encode_adapters(adapter_set)
        if loop_filter is not None and not loop_filter.is_identity():
            flags |= ctr.Flags.LOOP_FILTER
            sections[ctr.Section.LOOP_FILTER] = loopfilter.encode(loop_filter)
        if image.alpha is not None:
            flags |= ctr.Flags.ALPHA
            sections[ctr.Section.ALPHA] = encode_alpha(image.alpha)
        if image.icc and len(image.icc) <= MAX_ICC_BYTES:
            flags |= ctr.Flags.ICC
            sections[ctr.Section.ICC] = zlib.compress(image.icc, 9)
        if image.metadata:
            flags |= ctr.Flags.METADATA
            sections[ctr.Section.METADATA] = metadata_mod.encode(image.metadata)
        header = ctr.Header(
            width=width,
            height=height,
            colour=ctr.Colour.GRAY if image.mode == "L" else ctr.Colour.RGB,
            flags=flags,
            model_id=self.model_id,
            rate=rate,
            latent_crc=_crc_integers(z_symbols, residuals),
            tile=tile // ctr.TILE_UNIT,
            effort=effort,
        )
        data = ctr.write(ctr.Container(header=header, sections=sections))
        return EncodeResult(
            data=data,
            header=header,
            bits_hyper=8 * len(z_bytes),
            bits_latent=8 * len(y_bytes),
            seconds=time.perf_counter() - t0,
            notices=list(image.notices),
            y_hat=torch.from_numpy(residuals.astype(np.float32)) + means if keep_latents else None,
        )

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1)[None]
        x = x.to(self.device, torch.float32).div_(255.0)
        return x.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def analyse(
        self, rgb: np.ndarray, quality: float, tile: int = 0, progress: TileProgress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gained latents y (float, C×h×w) and hyper-latent symbols for an RGB array.

        With ``tile`` > 0 the analysis runs in haloed tiles, so memory stays bounded.
        """
        self._select_rate(int(round(quality * 256)))
        gain = self.model.gains(quality)[0].to(self.device).view(1, -1, 1, 1)
        padded = pad_to_multiple(rgb, PAD_MULTIPLE)
        hp, wp = padded.shape[:2]
        if not tile:
            with self._autocast():
                y = self.model.g_a(self._tensor(padded)).float() * gain
        else:
            y = torch.empty(1, self.config.M, hp // LATENT_STRIDE, wp // LATENT_STRIDE, device=self.device)
            windows = tile_windows(hp // LATENT_STRIDE, wp // LATENT_STRIDE, tile // LATENT_STRIDE,
                                   ANALYSIS_HALO // LATENT_STRIDE)
            for done, win in enumerate(windows, 1):
                rows, cols = win.outer_slices(LATENT_STRIDE)
                with self._autocast():
                    part = self.model.g_a(self._tensor(padded[rows, cols])).float() * gain
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
    def decode(self, data: bytes, max_pixels: int = ctr.DEFAULT_MAX_PIXELS,
               progress: TileProgress | None = None) -> DecodeResult:
        t0 = time.perf_counter()
        cont = ctr.parse(data, max_pixels=max_pixels)
        header = cont.header
        if header.model_id != self.model_id:
            raise ModelError(f"file was made with model {header.model_id}, not the loaded {self.model_id}")
        if header.rate > self.max_quality * 256:
            raise ContainerError(f"rate {header.quality:g} out of range for this model")
        window = window_pixels(header.height, header.width, header.tile_pixels)
        if window > MAX_WINDOW_PIXELS:
            raise ContainerError(f"file asks for a {window / 1e6:.0f} MP synthesis window, over the "
                                 f"{MAX_WINDOW_PIXELS / 1e6:.1f} MP limit")
        self._select_rate(header.rate)
        # The small side sections first: a corrupt one is refused before the expensive part.
        adapter_set = loop_filter = alpha = icc = meta = None
        if ctr.Section.ADAPTERS in cont.sections:
            channels = [s.channels for s in self.model.g_s.slots]
            adapter_set = adapters_mod.decode_adapters(cont.sections[ctr.Section.ADAPTERS], channels)
        if ctr.Section.LOOP_FILTER in cont.sections:
            loop_filter = loopfilter.decode(cont.sections[ctr.Section.LOOP_FILTER])
        if ctr.Section.ALPHA in cont.sections:
            alpha = decode_alpha(cont.sections[ctr.Section.ALPHA], header.height, header.width)
        if ctr.Section.ICC in cont.sections:
            icc = inflate_icc(cont.sections[ctr.Section.ICC])
        if ctr.Section.METADATA in cont.sections:
            meta = metadata_mod.decode(cont.sections[ctr.Section.METADATA])
        z_symbols, residuals, means = self.decode_integers(cont)
        y_hat = torch.from_numpy(residuals.astype(np.float32)) + means
        rgb = self.synthesise(y_hat, header.quality, adapter_set, tile=header.tile_pixels, progress=progress)
        rgb = crop(rgb, header.height, header.width)
        if loop_filter is not None:
            rgb = loopfilter.apply(rgb, loop_filter)
        mode = "L" if header.colour == ctr.Colour.GRAY else "RGB"
        image = to_pil(rgb, mode, alpha, icc, meta)
        return DecodeResult(image=image, header=header, seconds=time.perf_counter() - t0)

    def latent_shapes(self, header: ctr.Header) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        hp, wp = padded_size(header.height, header.width)
        c = self.config
        return (c.N, hp // 64, wp // 64), (c.M, hp // 16, wp // 16)

    def decode_integers(self, cont: ctr.Container) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """Entropy-decode z and the residuals, and verify the latent checksum."""
        self._select_rate(cont.header.rate)
        z_shape, y_shape = self.latent_shapes(cont.header)
        z_idx = np.broadcast_to(np.arange(z_shape[0])[:, None, None], z_shape)
        z_symbols = self.z_coder.decode(cont.section(ctr.Section.HYPERLATENTS), z_idx).reshape(z_shape)
        indexes, means = self._entropy_params(z_symbols)
        residuals = self.y_coder.decode(cont.section(ctr.Section.LATENTS), indexes).reshape(y_shape)
        for values in (z_symbols, residuals):
            if values.size and np.abs(values).max() >= 2**31:
                raise ContainerError("corrupt data: a decoded latent does not fit in 32 bits")
        if _crc_integers(z_symbols, residuals) != cont.header.latent_crc:
            raise ContainerError(
                "decoded latents fail their checksum (file damaged, or decoded with a different model build)"
            )
        return z_symbols, residuals, means

    @torch.no_grad()
    def synthesise(
        self,
        y_hat: torch.Tensor,
        quality: float,
        adapter_set: adapters_mod.AdapterSet | None = None,
        tile: int = 0,
        progress: TileProgress | None = None,
    ) -> np.ndarray:
        """Latents ŷ (C×h×w) → padded 8-bit RGB (H×W×3); in haloed tiles if ``tile`` > 0 (spec §4)."""
        _, inv_gain = self.model.gains(quality)
        inv_gain = inv_gain.to(self.device).view(1, -1, 1, 1)
        _, h, w = y_hat.shape
        windows = tile_windows(h, w, tile // LATENT_STRIDE, SYNTHESIS_HALO) if tile else None
        adapters_mod.install(self.model.g_s.slots, adapter_set, self.device)
        try:
            if windows is None:
                return self._synthesise_window(y_hat[None].to(self.device) * inv_gain)
            out = np.empty((h * LATENT_STRIDE, w * LATENT_STRIDE, 3), dtype=np.uint8)
            for done, win in enumerate(windows, 1):
                rows, cols = win.outer_slices()
                part = self._synthesise_window(y_hat[None, :, rows, cols].to(self.device) * inv_gain)
                core_rows, core_cols = win.core_in_outer(LATENT_STRIDE)
                rows, cols = win.core_slices(LATENT_STRIDE)
                out[rows, cols] = part[core_rows, core_cols]
                if progress is not None:
                    progress(done, len(windows))
            return out
        finally:
            adapters_mod.install(self.model.g_s.slots, None, self.device)

    def _synthesise_window(self, y: torch.Tensor) -> np.ndarray:
        y = y.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            x_hat = self.model.g_s(y).float()
        x = x_hat[0].clamp(0, 1).mul(255).round().to(torch.uint8)
        return x.permute(1, 2, 0).cpu().numpy()


def codec_for_file(path: Path, device: str = "cpu") -> Codec:
    """A codec whose weights come from a file path (tests, training exports)."""
    from . import hub, modelfile

    weights = modelfile.load(path)
    return Codec(weights, hub.model_id_for_file(path), resolve_device(device))
