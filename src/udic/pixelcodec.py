"""Pixel-coded .udic files (format version 5, spec §11): the image's own samples coded
exactly (lossless) or within ±max_error (near-lossless) by the integer pixel coder.

Why a second path beside the network: the learned transform has a fidelity ceiling and,
on synthetic content, costs more than the pixels themselves.  A pixel-coded file needs
no model and no float arithmetic, so it decodes to identical samples on every machine;
its header's ``latent_crc`` is the CRC-32 of the decoded samples, so a mismatch is a
refusal rather than a wrong image.  Nothing here imports torch.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from . import container as ctr
from . import lossless
from . import sections
from .errors import ContainerError
from .metadata import Metadata

MAX_ERROR_LIMIT = 255  # near-lossless tolerance accepted from users (in sample units)


def max_error_limit(bit_depth: int) -> int:
    """The loosest tolerance the pixel coder takes for ``bit_depth``-bit samples: MAX_ERROR_LIMIT
    in 8-bit units, scaled by 2^(depth − 8) as the ``-q`` ladder and the mode choice scale their
    steps for deeper sources (``modes.ladder_error``; spec, "Qualities above the network")."""
    return MAX_ERROR_LIMIT << (bit_depth - 8) if bit_depth > 8 else MAX_ERROR_LIMIT


def samples_crc(samples: np.ndarray) -> int:
    """CRC-32 of the samples in C order (H, W, C), 8-bit as bytes, 16-bit as u16 little-endian."""
    wide = samples.dtype == np.uint16
    return zlib.crc32(np.ascontiguousarray(samples, dtype="<u2" if wide else np.uint8).tobytes())


def peak(bit_depth: int) -> int:
    return (1 << bit_depth) - 1


def psnr(source: np.ndarray, decoded: np.ndarray, bit_depth: int) -> float:
    """PSNR over every sample (alpha included: it is always exact), peak 2^depth − 1."""
    diff = source.astype(np.float64) - decoded.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else 10 * math.log10(peak(bit_depth) ** 2 / mse)


def colour_psnr(source: np.ndarray, decoded: np.ndarray, bit_depth: int) -> float:
    """PSNR over the colour channels only (what udic reports for lossy files)."""
    colour = 1 if source.shape[2] <= 2 else 3
    return psnr(source[..., :colour], decoded[..., :colour], bit_depth)


@dataclass
class PixelEncoded:
    data: bytes
    header: ctr.Header
    max_error: int
    bit_depth: int
    seconds: float
    reconstruction: np.ndarray | None = field(default=None, repr=False)
    notices: list[str] = field(default_factory=list)
    # The encoder's account of the mode, as printed; the file's note section holds it, or only
    # the request where the account would cost too large a share of a small file (modes.NOTE_SHARE).
    note: str | None = None
    rate: None = None  # no model rate: keeps the learned EncodeResult's shape
    psnr: float | None = None  # colour PSNR in dB (inf when lossless), as on a learned EncodeResult

    @property
    def mode(self) -> str:
        return "lossless" if self.max_error == 0 else "near-lossless"

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.header.width * self.header.height)


@dataclass
class PixelDecoded:
    samples: np.ndarray  # (H, W, C) uint8 or uint16, C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    bit_depth: int
    max_error: int
    header: ctr.Header
    icc: bytes | None
    metadata: Metadata
    seconds: float


def encode_file(
    samples: np.ndarray,
    bit_depth: int = 8,
    max_error: int = 0,
    effort: int = 1,
    icc: bytes | None = None,
    metadata: Metadata | None = None,
    keep_reconstruction: bool = False,
    note: str | None = None,
) -> PixelEncoded:
    """A complete .udic file (version 5) holding ``samples`` through the pixel coder."""
    t0 = time.perf_counter()
    if samples.ndim == 2:
        samples = samples[:, :, None]
    limit = max_error_limit(bit_depth)
    if not 0 <= max_error <= limit:
        raise ValueError(f"max_error must be in 0..{limit}, got {max_error}")
    payload = lossless.encode(np.ascontiguousarray(samples), bit_depth=bit_depth, max_error=max_error,
                              effort=effort)
    return _file(samples, payload, bit_depth, effort, icc, metadata, keep_reconstruction, note, t0)


def encode_file_popular(samples: np.ndarray, bit_depth: int, max_error: int, effort: int = 1,
                        icc: bytes | None = None, metadata: Metadata | None = None) -> PixelEncoded | None:
    """``encode_file`` by ``lossless.encode_popular`` (only the rare colours merged within
    ±max_error: for PSNR targets on flat art); None where that coding does not apply."""
    t0 = time.perf_counter()
    if samples.ndim == 2:
        samples = samples[:, :, None]
    limit = max_error_limit(bit_depth)
    if not 0 < max_error <= limit:
        raise ValueError(f"max_error must be in 1..{limit}, got {max_error}")
    payload = lossless.encode_popular(np.ascontiguousarray(samples), bit_depth, max_error, effort)
    if payload is None:
        return None
    return _file(samples, payload, bit_depth, effort, icc, metadata, False, None, t0)


def _file(samples: np.ndarray, payload: bytes, bit_depth: int, effort: int, icc: bytes | None,
          metadata: Metadata | None, keep_reconstruction: bool, note: str | None, t0: float) -> PixelEncoded:
    """The .udic file around a pixel payload, its tolerance, checksum and PSNR."""
    # The coder may answer a near-lossless request exactly (when that is smaller): the
    # file's tolerance is what its payload says.
    max_error = int(lossless.describe(payload)["max_error"])
    decoded = samples if max_error == 0 else lossless.decode(payload)
    height, width, channels = samples.shape
    payloads = sections.encode_sections({"pixels": payload, "icc": icc, "metadata": metadata or None,
                                         "note": note})
    flags = ctr.flags_for(payloads)
    header = ctr.Header(
        width=width,
        height=height,
        colour=ctr.Colour.GRAY if channels <= 2 else ctr.Colour.RGB,
        flags=flags,
        model_id=ctr.NO_MODEL_ID,
        rate=0,
        latent_crc=samples_crc(decoded),
        tile=0,
        effort=min(int(effort), 255),
        version=ctr.PIXELS_VERSION,
    )
    data = ctr.write(ctr.Container(header=header, sections={ctr.Section(t): p for t, p in payloads.items()}))
    psnr = math.inf if max_error == 0 else colour_psnr(samples, decoded, bit_depth)  # decoded is in hand
    return PixelEncoded(data=data, header=header, max_error=max_error, bit_depth=bit_depth,
                        seconds=time.perf_counter() - t0,
                        reconstruction=decoded if keep_reconstruction else None, note=note, psnr=psnr)


def with_note(enc: PixelEncoded, note: str | None) -> PixelEncoded:
    """The same file with the encoder's note (an ancillary section) replaced: no re-encode."""
    data = ctr.with_note(enc.data, note, max_pixels=enc.header.width * enc.header.height)
    return PixelEncoded(data=data, header=enc.header, max_error=enc.max_error, bit_depth=enc.bit_depth,
                        seconds=enc.seconds, reconstruction=enc.reconstruction, notices=enc.notices, note=note,
                        psnr=enc.psnr)


def decode_container(cont: ctr.Container) -> PixelDecoded:
    """Samples of a parsed pixel-coded file; refuses it if they do not match its CRC."""
    t0 = time.perf_counter()
    h = cont.header
    if h.mode != "pixels":
        raise ContainerError("not a pixel-coded file")
    payload = cont.section(ctr.Section.PIXELS)
    # The payload's own header and the small sections first: a disagreeing or corrupt file is
    # refused before the pixels' decode, whose time only the image size bounds.
    described = lossless.describe(payload)
    if (described["height"], described["width"]) != (h.height, h.width):
        raise ContainerError(f"pixels section holds {described['width']}x{described['height']}, "
                             f"the header says {h.width}x{h.height}")
    if (int(described["channels"]) <= 2) != (h.colour == ctr.Colour.GRAY):
        raise ContainerError("pixels section's channels disagree with the header's colour mode")
    side = sections.decode_side_sections(cont.sections, sections.DecodeContext(height=h.height, width=h.width))
    icc, meta = side.get("icc"), side.get("metadata", Metadata())
    samples = lossless.decode(payload, max_pixels=h.width * h.height)
    if samples_crc(samples) != h.latent_crc:
        raise ContainerError("decoded samples do not match the file's checksum")
    return PixelDecoded(samples=samples, bit_depth=int(described["bit_depth"]),
                        max_error=int(described["max_error"]), header=h, icc=icc, metadata=meta,
                        seconds=time.perf_counter() - t0)


def decode_file(data: bytes, max_pixels: int = ctr.DEFAULT_MAX_PIXELS) -> PixelDecoded:
    return decode_container(ctr.parse(data, max_pixels))
