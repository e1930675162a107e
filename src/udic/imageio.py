"""Reading and writing ordinary image files for the codec.

Everything the codec touches is normalised here to 8-bit RGB plus optional
alpha/ICC, so the model never sees odd Pillow modes.  Every failure becomes an
``InputError`` / ``OutputError`` with a one-line message, and writes are atomic
so an interrupted or failed run never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from udic.errors import InputError, OutputError
from udic.metadata import MAX_METADATA_BYTES, Metadata

DEFAULT_MAX_PIXELS = 64_000_000  # larger needs allow_large=True
MAX_SIDE = 1 << 20  # the container's limit per side (bitstream_spec.md §2)

_NOTICE_16BIT = "reduced 16-bit to 8 bits per channel"

# Pillow modes whose content is a single grey channel (optionally with alpha).
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})

# Output formats we are prepared to write, keyed by Pillow format name.
_WRITABLE = frozenset({"PNG", "WEBP", "JPEG", "BMP", "TIFF", "PPM"})
_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "PGM": "PPM", "PNM": "PPM", "PBM": "PPM"}


@dataclass
class LoadedImage:
    """A decoded input, normalised so the codec only ever deals with 8-bit RGB."""

    rgb: np.ndarray  # (H, W, 3) uint8, EXIF orientation already applied
    mode: Literal["RGB", "L"]  # "L" if the source was grayscale, else "RGB"
    alpha: np.ndarray | None  # (H, W) uint8 if the source had real transparency
    icc: bytes | None  # ICC profile carried from the source, if any
    notices: list[str] = field(default_factory=list)  # one-line conversion notices
    metadata: Metadata = Metadata()  # EXIF (orientation applied and removed) and XMP
    # The exact samples of a source over 8 bits (a 16-bit PNG), (H, W, C) uint16 with
    # C = 1, 2, 3 or 4, for the pixel coder; the learned codec uses ``rgb`` (8 bits).
    wide: np.ndarray | None = None
    bit_depth: int = 8


# --------------------------------------------------------------------------- load


def _one_line(exc: BaseException) -> str:
    """Pillow/OS messages sometimes span lines or are empty; the CLI needs one line."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


@contextlib.contextmanager
def _pillow_limit(limit: int | None) -> Iterator[None]:
    """Pillow's own pixel limit set to ours (its error threshold is twice its setting) and its
    warnings kept off the terminal while an image is read.

    Our check on the header's size runs before any pixel is decoded, but some formats decode
    while they are opened (an ICO's or ICNS's embedded PNG): Pillow's limit stops those, where
    switching it off had let a 388 KB icon decode a 20000 × 20000 PNG.  Warnings (a damaged
    EXIF offset, a large image the user allowed) would print two lines naming Pillow's source.
    ``limit`` None: no limit.  The limit is Pillow's global: one thread at a time holds it (two
    threads saving and restoring it in turn had left a small limit behind for the whole process,
    e.g. `udic compare --jobs 2` scoring its decoded files).
    """
    with _PILLOW_LIMIT_LOCK:  # (re-entrant: ``_too_large`` reads a header inside it)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None if limit is None else max(1, limit // 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


_PILLOW_LIMIT_LOCK = threading.RLock()


def _read_source(source: str | os.PathLike[str] | bytes) -> bytes:
    """Read the whole input so format sniffing and decoding share one buffer."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise InputError("empty input")
        return data
    path = Path(source)
    try:
        if path.is_dir():
            raise InputError("is a directory")
        if not path.exists():
            raise InputError("no such file")
        data = path.read_bytes()
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"cannot read: {_one_line(exc)}") from None
    if not data:
        raise InputError("empty file")
    return data


def _source_bit_depth(im: Image.Image, data: bytes) -> int | None:
    """Bits per sample of the file itself: Pillow silently narrows 16-bit colour PNGs."""
    if im.format == "PNG" and len(data) >= 25 and data[12:16] == b"IHDR":
        return data[24]
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)
        if isinstance(bits, tuple) and bits:
            return int(max(bits))
        if isinstance(bits, int):
            return bits
    return None


def _wide_gray_to_u8(im: Image.Image, bit_depth: int | None, notices: list[str]) -> np.ndarray:
    """Scale 16/32-bit or float grey to 0..255 with rounding (Pillow's convert clips)."""
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        # Float images are conventionally 0..1; anything larger is taken as 0..255.
        if arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        notices.append("converted 32-bit float gray to 8-bit")
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)

    arr = np.asarray(im).astype(np.int64)
    arr = np.clip(arr, 0, None)
    peak = int(arr.max()) if arr.size else 0
    if im.mode.startswith("I;16") or bit_depth == 16 or 255 < peak <= 65535:
        notices.append(_NOTICE_16BIT)
        arr = np.minimum(arr, 65535)
        # round(v / 257) exactly: 257 is odd so there are no ties.
        return ((arr + 128) // 257).astype(np.uint8)
    if peak <= 255:
        return arr.astype(np.uint8)
    notices.append("converted 32-bit gray to 8-bit")
    return ((arr * 255 + (2**31 - 1) // 2) // (2**31 - 1)).astype(np.uint8)


def _icc_colour_space(icc: bytes) -> bytes | None:
    """The ICC header's data colour space signature (e.g. b'RGB ', b'CMYK')."""
    if len(icc) < 128:
        return None
    return icc[16:20]


def _normalise(
    im: Image.Image, bit_depth: int | None, notices: list[str]
) -> tuple[np.ndarray, Literal["RGB", "L"], np.ndarray | None]:
    """Reduce any Pillow mode to (rgb, mode, alpha)."""
    mode = im.mode
    trns = im.info.get("transparency")
    alpha: np.ndarray | None = None
    out_mode: Literal["RGB", "L"]

    if mode in _GRAY_MODES:
        out_mode = "L"
        if mode in _WIDE_GRAY_MODES:
            if isinstance(trns, int):
                alpha = np.where(np.asarray(im) == trns, 0, 255).astype(np.uint8)
            gray = _wide_gray_to_u8(im, bit_depth, notices)
        else:
            if mode == "La":
                im = im.convert("LA")
            elif mode in ("1", "L") and trns is not None:
                im = im.convert("LA")
            elif mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
            if arr.ndim == 3:
                gray, alpha = arr[..., 0], arr[..., 1]
            else:
                gray = arr
            if bit_depth == 16:
                notices.append(_NOTICE_16BIT)
        rgb = np.repeat(np.asarray(gray, dtype=np.uint8)[..., None], 3, axis=2)
    else:
        out_mode = "RGB"
        if mode in ("P", "PA"):
            notices.append("converted palette to RGB")
            has_alpha = mode == "PA" or trns is not None
            im = im.convert("RGBA" if has_alpha else "RGB")
        elif mode == "CMYK":
            notices.append("converted CMYK to RGB")
            im = im.convert("RGB")
        elif mode in ("RGBA", "RGBa"):
            im = im.convert("RGBA")
        elif mode == "RGB":
            if trns is not None:
                im = im.convert("RGBA")
        elif mode == "RGBX":
            im = im.convert("RGB")
        elif mode in ("YCbCr", "LAB", "HSV"):
            notices.append(f"converted {mode} to RGB")
            im = im.convert("RGB")
        else:
            notices.append(f"converted {mode} to RGB")
            im = im.convert("RGBA" if "A" in mode else "RGB")
        if bit_depth == 16:
            notices.append(_NOTICE_16BIT)
        arr = np.asarray(im)
        rgb = np.ascontiguousarray(arr[..., :3], dtype=np.uint8)
        if arr.shape[2] == 4:
            alpha = arr[..., 3]

    if alpha is not None:
        alpha = np.ascontiguousarray(alpha, dtype=np.uint8)
        if bool(np.all(alpha == 255)):
            alpha = None
    return np.ascontiguousarray(rgb), out_mode, alpha


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    allow_large: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Decode a path or raw file bytes into 8-bit RGB, refusing anything unsafe or broken.

    The pixel count is checked from the header before decoding, so a small
    file claiming a huge size cannot exhaust memory.
    """
    data = _read_source(source)
    notices: list[str] = []
    with _pillow_limit(MAX_SIDE**2 if allow_large else max_pixels):
        try:
            im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise InputError("not an image or unknown format") from None
        except Image.DecompressionBombError:
            raise InputError(_too_large(data, max_pixels)) from None
        except Exception as exc:  # Pillow raises many types for damaged headers
            raise InputError(f"cannot read image: {_one_line(exc)}") from None

        width, height = im.size
        if width <= 0 or height <= 0:
            raise InputError(f"image has a zero dimension ({width}x{height})")
        if max(width, height) > MAX_SIDE:
            raise InputError(f"image is {width}x{height}; udic files hold at most {MAX_SIDE} pixels a side")
        if not allow_large and width * height > max_pixels:
            raise InputError(
                f"image is {width}x{height}, over {max_pixels} pixels (use --allow-large)"
            )

        try:
            frames = int(getattr(im, "n_frames", 1) or 1)
            if frames > 1:
                im.seek(0)
                notices.append(f"used the first of {frames} frames")
            bit_depth = _source_bit_depth(im, data)
            icc = im.info.get("icc_profile") or None
            im.load()
            if im.size != (width, height) and (max(im.size) > MAX_SIDE or
                                               (not allow_large and im.size[0] * im.size[1] > max_pixels)):
                raise InputError(f"image is {im.size[0]}x{im.size[1]} once decoded, over the limit")
            orientation = _orientation(im)
            transposed = ImageOps.exif_transpose(im)
            if transposed is not None:
                im = transposed  # its EXIF no longer has an orientation tag
            meta = _read_metadata(im.info, notices)
            rgb, mode, alpha = _normalise(im, bit_depth, notices)
        except InputError:
            raise
        except Exception as exc:  # truncated/corrupt data surfaces in many forms
            raise InputError(f"corrupt or truncated image: {_one_line(exc)}") from None

    if icc is not None:
        icc = bytes(icc)
        space = _icc_colour_space(icc)
        expected = b"GRAY" if mode == "L" else b"RGB "
        if space is None:
            notices.append("dropped invalid ICC profile")
            icc = None
        elif space != expected:
            name = space.decode("latin-1").strip() or "unknown"
            notices.append(f"dropped {name} ICC profile (output is {mode})")
            icc = None

    wide = _wide_samples(data, bit_depth, orientation, max_pixels if not allow_large else MAX_SIDE**2)
    return LoadedImage(rgb=rgb, mode=mode, alpha=alpha, icc=icc, notices=notices, metadata=meta,
                       wide=wide, bit_depth=16 if wide is not None else 8)


_ORIENTATIONS = {2, 3, 4, 5, 6, 7, 8}  # the EXIF orientations that move pixels


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation as ImageOps.exif_transpose reads it (the same lookup: a text "6" or
    a fraction turns nothing there, so it turns nothing here, and the 16-bit samples stay in step
    with ``rgb``)."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block: Pillow's transpose ignores it too
        return 1
    try:
        return int(value) if value in _ORIENTATIONS else 1
    except TypeError:  # unhashable
        return 1


def _too_large(data: bytes, max_pixels: int) -> str:
    """The refusal of an image Pillow's limit stopped: its size named where reading the header
    again costs nothing (icons decode their embedded PNG while opening: not those)."""
    if not data.startswith((b"\x00\x00\x01\x00", b"icns")):
        with _pillow_limit(None):
            try:
                width, height = Image.open(io.BytesIO(data)).size
                return f"image is {width}x{height}, over {max_pixels} pixels (use --allow-large)"
            except Exception:
                pass
    return f"image is over {max_pixels} pixels (use --allow-large)"


def _orient(samples: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation applied with numpy, as ImageOps.exif_transpose does to ``rgb``."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
           7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: a.transpose(1, 0, 2)[::-1]}
    op = ops.get(orientation)
    return np.ascontiguousarray(samples if op is None else op(samples))


def _wide_samples(data: bytes, bit_depth: int | None, orientation: int, max_pixels: int) -> np.ndarray | None:
    """A 16-bit PNG's exact samples (Pillow narrows 16-bit colour to 8 bits), else None."""
    if bit_depth != 16 or not data.startswith(b"\x89PNG"):
        return None
    from . import png16

    try:
        samples, info = png16.read(data, max_pixels=max_pixels)
    except InputError:
        return None  # Pillow read it: the 8-bit path stands, as before
    if samples.dtype != np.uint16 or info.get("transparent") is not None:
        return None
    return _orient(samples, orientation)


def samples_to_pil(samples: np.ndarray, bit_depth: int, icc: bytes | None = None,
                   metadata: Metadata | None = None) -> Image.Image:
    """Exact samples (H, W, C) as a PIL image: 8-bit modes L, LA, RGB, RGBA; over 8 bits,
    gray becomes I;16 and colour is reduced to 8 bits (PIL has no 16-bit colour mode)."""
    channels = samples.shape[2]
    # Pillow infers the mode from the array (its ``mode`` argument is deprecated, and Pillow 13
    # refuses "I;16" with it): little-endian uint16 gray is I;16, uint8 by channels L/LA/RGB/RGBA.
    if bit_depth > 8 and channels == 1:
        image = Image.fromarray(np.ascontiguousarray(samples[..., 0].astype("<u2")))
    else:
        if bit_depth > 8:
            scale = ((1 << bit_depth) - 1)
            samples = ((samples.astype(np.uint32) * 255 + scale // 2) // scale).astype(np.uint8)
        arr = np.ascontiguousarray(samples.astype(np.uint8))
        image = Image.fromarray(arr[..., 0] if channels == 1 else arr)
    if image.mode != ("I;16" if bit_depth > 8 and channels == 1 else ("L", "LA", "RGB", "RGBA")[channels - 1]):
        raise ValueError(f"Pillow made a {image.mode} image of {channels}-channel samples")
    if icc:
        image.info["icc_profile"] = icc
    if metadata is not None:
        if metadata.exif:
            image.info["exif"] = metadata.exif
        if metadata.xmp:
            image.info["xmp"] = metadata.xmp
    return image


def save_wide_png(samples: np.ndarray, bit_depth: int, dest: str | os.PathLike[str], *, force: bool = False,
                  icc: bytes | None = None, exif: bytes | None = None, xmp: bytes | None = None) -> None:
    """Exact samples over 8 bits as a 16-bit PNG (Pillow cannot write 16-bit colour)."""
    from . import png16

    data = png16.write(samples.astype(np.uint16), bit_depth=16, icc=icc, exif=exif, xmp=xmp)
    if os.fspath(dest) == "-":
        _write_stdout(data)
        return
    path = Path(dest)
    _check_destination(path, force)
    atomic_write_bytes(path, data, force=force)


def png_keeping_metadata(image: Image.Image) -> bytes:
    """A PIL image as PNG bytes with its ICC profile, EXIF and XMP (for the Python API)."""
    meta = _read_metadata(image.info, [])
    buf = io.BytesIO()
    image.save(buf, format="PNG", **_metadata_options(meta.exif, meta.xmp, "PNG"))
    return buf.getvalue()


def _read_metadata(info: dict, notices: list[str]) -> Metadata:
    """EXIF and XMP as Pillow exposes them (PNG keeps XMP in an iTXt chunk)."""
    exif = info.get("exif") or None
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    exif = _pillow_exif(bytes(exif)) if isinstance(exif, (bytes, bytearray)) else None
    xmp = bytes(xmp) if isinstance(xmp, (bytes, bytearray)) else None
    if (len(exif or b"") + len(xmp or b"")) > MAX_METADATA_BYTES - 16:
        notices.append(f"dropped EXIF/XMP metadata over {MAX_METADATA_BYTES >> 20} MiB")
        return Metadata()
    return Metadata(exif=exif, xmp=xmp)


# ------------------------------------------------------------------------- build


def to_pil(
    rgb: np.ndarray,
    mode: str,
    alpha: np.ndarray | None = None,
    icc: bytes | None = None,
    metadata: Metadata | None = None,
) -> Image.Image:
    """Turn decoded codec output back into a Pillow image in the source's mode."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if mode == "L":
        image = image.convert("L")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.shape != rgb.shape[:2] or alpha.dtype != np.uint8:
            raise ValueError(f"alpha must be {rgb.shape[:2]} uint8, got {alpha.shape} {alpha.dtype}")
        image.putalpha(Image.fromarray(np.ascontiguousarray(alpha)))
    if icc:
        image.info["icc_profile"] = bytes(icc)
    if metadata is not None and metadata.exif:
        image.info["exif"] = metadata.exif
    if metadata is not None and metadata.xmp:
        image.info["xmp"] = metadata.xmp
    return image


# ------------------------------------------------------------------------- write


def _resolve_format(dest: str | os.PathLike[str] | None, format: str | None) -> str:
    """Pick the Pillow format from the explicit name or the destination suffix."""
    if format:
        name = format.upper().lstrip(".")
        name = _FORMAT_ALIASES.get(name, name)
        if name not in _WRITABLE:
            raise OutputError(f"unsupported output format {format!r}")
        return name
    if dest is None or os.fspath(dest) == "-":
        return "PNG"
    suffix = Path(dest).suffix.lower()
    if not suffix:
        raise OutputError("output has no file suffix to choose a format")
    name = Image.registered_extensions().get(suffix)
    if name is None or name not in _WRITABLE:
        raise OutputError(f"unsupported output suffix {suffix!r}")
    return name


def _prepare(
    image: Image.Image, fmt: str, suffix: str = ""
) -> tuple[Image.Image, dict[str, Any]]:
    """Adapt mode and save options to what each format can actually store."""
    icc = image.info.get("icc_profile")
    meta = _read_metadata(image.info, [])
    exif, xmp = meta.exif, meta.xmp
    kwargs: dict[str, Any] = {}
    has_alpha = image.mode in ("RGBA", "LA")
    gray = image.mode in ("L", "LA")
    if fmt == "JPEG":
        image = image.convert("L" if gray else "RGB")
        kwargs["quality"] = 95
    elif fmt == "PPM":
        want_gray = gray or suffix == ".pgm"
        image = image.convert("L" if want_gray else "RGB")
    elif fmt == "WEBP":
        image = image.convert("RGBA" if has_alpha else "RGB")
        kwargs.update(lossless=True, exact=True)
    elif fmt == "BMP":
        if image.mode == "LA":
            image = image.convert("RGBA")
    if icc and fmt in ("PNG", "WEBP", "JPEG", "TIFF"):
        kwargs["icc_profile"] = icc
    kwargs.update(_metadata_options(exif, xmp, fmt))
    return image, kwargs


_JPEG_SEGMENT = 65_000  # a JPEG APP segment holds < 64 KiB: larger EXIF/XMP cannot be written there


_EXIF_HEADER = b"Exif\x00\x00"


def _pillow_exif(exif: bytes) -> bytes:
    """EXIF in one form, Pillow's: "Exif\\0\\0" and then the TIFF structure.  Pillow reads it
    so from JPEG and PNG but without the header from WebP, and writes it to JPEG as given: a
    WebP photo's EXIF had come out of a JPEG decode where no reader finds it.  (Pillow's PNG and
    WebP writers drop the header themselves; so does png16.)"""
    if exif.startswith((b"II*\x00", b"MM\x00*")):
        return _EXIF_HEADER + exif
    return exif


def _metadata_options(exif: bytes | None, xmp: bytes | None, fmt: str) -> dict[str, Any]:
    """Save options that write EXIF and XMP in the formats that hold them."""
    out: dict[str, Any] = {}
    if exif and fmt in ("PNG", "WEBP", "JPEG", "TIFF") and not (fmt == "JPEG" and len(exif) > _JPEG_SEGMENT):
        out["exif"] = exif
    if xmp and fmt in ("WEBP", "JPEG") and not (fmt == "JPEG" and len(xmp) > _JPEG_SEGMENT):
        out["xmp"] = xmp
    elif xmp and fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
        out["pnginfo"] = info
    return out


def encode_image_bytes(image: Image.Image, format: str = "PNG") -> bytes:
    """Encode in memory, so stdout and atomic file writes share one code path."""
    fmt = _resolve_format(None, format)
    return _encode(image, fmt)


def _encode(image: Image.Image, fmt: str, suffix: str = "") -> bytes:
    """Encode, turning any encoder failure into a one-line OutputError."""
    prepared, kwargs = _prepare(image, fmt, suffix)
    buf = io.BytesIO()
    try:
        prepared.save(buf, format=fmt, **kwargs)
    except Exception as exc:  # encoders raise OSError, ValueError, KeyError ...
        raise OutputError(f"cannot encode {fmt}: {_one_line(exc)}") from None
    return buf.getvalue()


def is_special_file(path: Path | str) -> bool:
    """Whether ``path`` exists and is no regular file: a device (/dev/null), a FIFO, a socket.
    A rename over it would replace it with an ordinary file (as root, /dev/null itself)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _write_in_place(path: Path, data: bytes) -> None:
    """Write into an existing special file (``--force`` to /dev/null or a FIFO): there is no
    partial file to hide, and renaming would destroy it."""
    try:
        with open(path, "wb") as out:
            out.write(data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_one_line(exc)}") from None


def _check_destination(path: Path, force: bool) -> None:
    """Fail early, before encoding, on destinations that cannot work."""
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} does not exist")
    if path.is_dir():
        raise OutputError(f"{path} is a directory")
    if not force and (path.exists() or path.is_symlink()):
        raise OutputError(f"{path} exists (use --force to overwrite)")


def save_image(
    image: Image.Image,
    dest: str | os.PathLike[str],
    *,
    force: bool = False,
    format: str | None = None,
) -> None:
    """Write an image atomically; "-" means stdout (PNG unless ``format`` says otherwise)."""
    fmt = _resolve_format(dest, format)
    if os.fspath(dest) == "-":
        _write_stdout(_encode(image, fmt))
        return
    path = Path(dest)
    _check_destination(path, force)
    atomic_write_bytes(path, _encode(image, fmt, path.suffix.lower()), force=force)


def _write_stdout(data: bytes) -> None:
    """Binary stdout write that reports a closed pipe or full disk as OutputError."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except OSError as exc:
        raise OutputError(f"cannot write to stdout: {_one_line(exc)}") from None


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write partially; loop until everything is out."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; outputs get the usual 0666 & ~umask.  Read once, here: setting and
# restoring it around each write raced between a parallel batch's worker threads.
_UMASK = _read_umask()


def _current_umask() -> int:
    return _UMASK


# A temp file's name keeps at most this much of its output's name: ".<name>.<8 random>.udic-tmp"
# must fit the 255 bytes a name may have where the output's own name fits.
TEMP_NAME_KEEP = 200


def temp_prefix(path: Path) -> str:
    """The start of the temp file names of an output being written (``batch`` cleans them up)."""
    return f".{path.name[:TEMP_NAME_KEEP]}."


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; best effort since not every filesystem allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish_exclusive(tmp: str, path: Path) -> None:
    """Move tmp to path only if path does not exist, without a check-then-act race.

    A hard link fails atomically with EEXIST; where links are unsupported we
    claim the name with O_EXCL first, so we only ever replace our own file.
    """
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS,
                             errno.EMLINK, errno.EXDEV, errno.EACCES):
            raise
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        try:
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return
    os.unlink(tmp)


def atomic_write_bytes(
    dest: str | os.PathLike[str], data: bytes, *, force: bool = False
) -> None:
    """Write via a same-directory temp file + fsync + rename, so readers never see a partial file.

    On any failure the temp file is removed and an OutputError is raised;
    without ``force`` an existing destination is never overwritten, even if
    it appears while we are writing.
    """
    if os.fspath(dest) == "-":
        _write_stdout(data)
        return
    path = Path(dest)
    _check_destination(path, force)
    if force and is_special_file(path):
        _write_in_place(path, data)
        return
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".udic-tmp")
        try:
            os.fchmod(fd, 0o666 & ~_current_umask())
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(tmp, path)
        else:
            _publish_exclusive(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except FileExistsError:
        raise OutputError(f"{path} exists (use --force to overwrite)") from None
    except IsADirectoryError:
        raise OutputError(f"{path} is a directory") from None
    except OSError as exc:  # the output is named: the caller's prefix is the input's name
        raise OutputError(f"cannot write {path}: {_one_line(exc)}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# ------------------------------------------------------------------ pad and crop


def pad_to_multiple(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate bottom/right so the model's downsampling divides evenly.

    Edge replication (rather than zeros) avoids a sharp border that would cost bits.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    if rgb.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C), got shape {rgb.shape}")
    height, width = rgb.shape[:2]
    if height == 0 or width == 0:
        raise ValueError("cannot pad an empty image")
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h == 0 and pad_w == 0:
        return rgb
    pads = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (rgb.ndim - 2)
    return np.pad(rgb, pads, mode="edge")


def crop(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Undo pad_to_multiple: keep the top-left height x width region."""
    if height < 1 or width < 1 or height > rgb.shape[0] or width > rgb.shape[1]:
        raise ValueError(f"cannot crop {rgb.shape[:2]} to {(height, width)}")
    return rgb[:height, :width]
