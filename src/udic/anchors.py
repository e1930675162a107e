"""Adapters for the anchor codecs that ``udic compare`` measures udic against.

Each adapter wraps one codec behind the same small interface (encode a PNG at a
quality setting, decode a file back to PNG) so the comparison engine never needs to
know tool syntax.  Design choices, and why:

- Real tools, found on PATH at call time: the numbers must be reproducible with the
  same command lines a reader of the report can run, so every adapter exposes the
  exact argv it uses (:meth:`Codec.encode_commands`, :meth:`Codec.decode_commands`).
- Settings follow the usual learned-compression anchors: BPG ``-f 444 -b 8``; VVC
  (vvenc) single intra frame with perceptual QP adaptation off; x265 ``-preset
  veryslow -tune psnr`` constant QP, intra only, 4:4:4; cjxl ``-e 7``; avifenc
  ``-y 444``; cwebp ``-m 6``; JPEG through Pillow's libjpeg (4:2:0, the libjpeg
  default that JPEG anchors are normally quoted with).
- HEVC and VVC code YUV, so RGB is converted once with **full-range BT.709** in
  4:4:4 (ffmpeg's scale filter, accurate rounding) and the streams are tagged
  accordingly so any decoder maps them back with the same matrix.  That round trip
  alone costs a little: on the noisy test gradients it caps PSNR at ≈53 dB
  (limited-range BT.601, ffmpeg's default, caps at ≈52 dB); at the rates compared
  (< 45 dB) the effect is far below 0.1 dB.
- Every subprocess has a timeout; any failure becomes a :class:`CodecError` (a
  ``UdicError``) with a one-line message, so one broken file or tool never aborts a
  whole comparison.
- The udic adapter imports ``udic.api`` lazily, so anchors work without a model.
"""

from __future__ import annotations

import importlib
import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from udic.effort import DEFAULT_EFFORT
from udic.errors import InputError, UdicError

__all__ = [
    "CODECS",
    "Codec",
    "CodecError",
    "DEFAULT_TIMEOUT",
    "available_codecs",
    "detect_codec",
    "get_codec",
    "roundtrip",
    "run_tool",
]

DEFAULT_TIMEOUT = 300.0  # seconds per tool invocation; a veryslow x265 of a 4K photo fits

# The ffmpeg scale filter settings shared by the HEVC and VVC paths (see module doc).
_TO_YUV = "scale=out_color_matrix=bt709:out_range=full:flags=accurate_rnd+full_chroma_int"
_YUV_TAGS = ["-color_range", "pc", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "iec61966-2-1"]


class CodecError(UdicError):
    """An external codec tool is missing, failed, timed out, or produced no usable output."""


def _one_line(text: str, limit: int = 200) -> str:
    """Last meaningful line of a tool's output: that is where tools put the reason."""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_tool(argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> None:
    """Run one codec tool; raise :class:`CodecError` (one line) on any failure.

    The tool runs in its own process group, killed whole on a timeout or an interrupt: a
    wrapper script's children would otherwise outlive it (and a Ctrl-C waited for the tool)."""
    name = os.path.basename(argv[0])
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except FileNotFoundError:
        raise CodecError(f"{name} not found on PATH") from None
    except OSError as exc:
        raise CodecError(f"{name} could not run: {exc.strerror or exc}") from None
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise CodecError(f"{name} timed out after {timeout:g} s") from None
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
    if proc.returncode != 0:
        why = _one_line(stderr.decode("utf-8", "replace")) or _one_line(stdout.decode("utf-8", "replace"))
        raise CodecError(f"{name} failed (exit {proc.returncode}): {why or 'no message'}")


# Tools running now, on any thread: their own sessions do not see the terminal's Ctrl-C, and the
# threads that wait for them do not get the KeyboardInterrupt, so whoever catches it kills these.
_RUNNING: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()


def kill_running_tools() -> None:
    """Kill every codec tool still running (an interrupted comparison), with its children."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proc in running:
        _signal_group(proc)


def _signal_group(proc: subprocess.Popen) -> None:
    """SIGKILL to a tool's process group (its session: the tool and what it started)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a tool and everything it started, and reap it."""
    _signal_group(proc)
    try:
        proc.communicate(timeout=5)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass


def _require_output(path: Path, tool: str) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        raise CodecError(f"{tool} produced no output")


def _fmt_q(quality: float) -> str:
    """Quality as the tools want it: integers without a trailing .0."""
    q = float(quality)
    return str(int(q)) if q.is_integer() else f"{q:g}"


def _image_size(png: Path) -> tuple[int, int]:
    try:
        with Image.open(png) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot read {png.name}: {exc}") from None


def _pillow_decode(path: Path, out_png: Path, what: str) -> None:
    """Decode anything Pillow (plus its plugins) can read into an 8-bit RGB PNG."""
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        why = _one_line(str(exc)) or type(exc).__name__
        raise CodecError(f"Pillow cannot decode this {what} file: {why}") from None
    rgb.save(out_png, format="PNG")


def _ffmpeg_to_png(path: Path, out_png: Path, fmt: str | None = None) -> list[str]:
    """argv that makes ffmpeg decode one frame to an RGB PNG (colour tags of the stream honoured)."""
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    if fmt:
        argv += ["-f", fmt]
    argv += ["-i", str(path), "-frames:v", "1", "-pix_fmt", "rgb24", str(out_png)]
    return argv


def _has_ffmpeg_codec(kind: str, name: str) -> bool:
    """Whether this ffmpeg build lists encoder/decoder ``name`` (cached per process)."""
    key = (kind, name)
    if key not in _FFMPEG_CACHE:
        ok = False
        if shutil.which("ffmpeg"):
            try:
                out = subprocess.run(
                    ["ffmpeg", "-hide_banner", f"-{kind}s"],
                    capture_output=True,
                    stdin=subprocess.DEVNULL,
                    timeout=30,
                    check=False,
                ).stdout.decode("utf-8", "replace")
                ok = any(len(p := ln.split()) >= 2 and p[1] == name for ln in out.splitlines())
            except (OSError, subprocess.TimeoutExpired):
                ok = False
        _FFMPEG_CACHE[key] = ok
    return _FFMPEG_CACHE[key]


_FFMPEG_CACHE: dict[tuple[str, str], bool] = {}


class Codec:
    """One codec: how to encode a PNG at a quality setting and how to decode files.

    ``quality`` is the codec's own knob (JPEG quality, JXL distance, QP, …), listed
    by :meth:`default_qualities` in order of increasing rate.
    """

    name: str = ""
    label: str = ""
    suffixes: tuple[str, ...] = ()
    quality_meaning: str = ""
    timeout: float = DEFAULT_TIMEOUT

    def __init__(self, timeout: float | None = None) -> None:
        if timeout is not None:
            self.timeout = timeout

    # -- availability -------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """Why this codec cannot encode here, or ``None`` when it can."""
        return None

    def available(self) -> bool:
        """Whether :meth:`encode` can run on this machine."""
        return self.unavailable_reason() is None

    def can_decode(self) -> str | None:
        """Why this codec's files cannot be decoded here, or ``None`` when they can."""
        return self.unavailable_reason()

    # -- the interface ------------------------------------------------------------
    def default_qualities(self) -> list[float]:
        """About six settings spanning roughly 0.1–1.5 bpp on photographs."""
        raise NotImplementedError

    def encode(self, png_path: Path, out_path: Path, quality: float) -> None:
        """Encode an 8-bit RGB PNG to ``out_path``."""
        png_path, out_path = Path(png_path), Path(out_path)
        reason = self.unavailable_reason()
        if reason:
            raise CodecError(reason)
        for argv in self._encode_argvs(png_path, out_path, quality):
            run_tool(argv, self.timeout)
        _require_output(out_path, self.name)

    def decode(self, path: Path, out_png: Path) -> None:
        """Decode ``path`` to an 8-bit RGB PNG at ``out_png``."""
        path, out_png = Path(path), Path(out_png)
        reason = self.can_decode()
        if reason:
            raise CodecError(reason)
        for argv in self._decode_argvs(path, out_png):
            run_tool(argv, self.timeout)
        _require_output(out_png, self.name)

    def encode_commands(self, quality: float, src: str = "IN.png", out: str | None = None) -> list[str]:
        """The exact command lines :meth:`encode` runs, for the report."""
        out = out or f"OUT{self.suffixes[0]}"
        return [shlex.join(a) for a in self._encode_argvs(Path(src), Path(out), quality, describe=True)]

    def decode_commands(self, src: str | None = None, out: str = "OUT.png") -> list[str]:
        """The exact command lines :meth:`decode` runs, for the report."""
        src = src or f"IN{self.suffixes[0]}"
        return [shlex.join(a) for a in self._decode_argvs(Path(src), Path(out), describe=True)]

    # -- per-codec argv ----------------------------------------------------------
    def _encode_argvs(self, src: Path, out: Path, quality: float, describe: bool = False) -> list[list[str]]:
        raise NotImplementedError

    def _decode_argvs(self, src: Path, out: Path, describe: bool = False) -> list[list[str]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<codec {self.name}>"


def _missing(*tools: str) -> str | None:
    absent = [t for t in tools if shutil.which(t) is None]
    return f"{', '.join(absent)} not found on PATH" if absent else None


class JpegCodec(Codec):
    """Baseline JPEG through Pillow's libjpeg (optimised Huffman tables, 4:2:0)."""

    name, label = "jpeg", "JPEG (libjpeg)"
    suffixes = (".jpg", ".jpeg", ".jfif", ".jpe")
    quality_meaning = "Pillow/libjpeg quality 1–95 (higher = more bits)"

    def default_qualities(self) -> list[float]:
        return [5, 15, 30, 50, 75, 90]

    def encode(self, png_path: Path, out_path: Path, quality: float) -> None:
        try:
            with Image.open(png_path) as im:
                im.convert("RGB").save(out_path, format="JPEG", quality=int(round(quality)), optimize=True)
        except (OSError, ValueError) as exc:
            raise CodecError(f"JPEG encoding failed: {_one_line(str(exc))}") from None

    def decode(self, path: Path, out_png: Path) -> None:
        _pillow_decode(Path(path), Path(out_png), "JPEG")

    def encode_commands(self, quality: float, src: str = "IN.png", out: str | None = None) -> list[str]:
        out = out or "OUT.jpg"
        q = int(round(quality))
        return [f"python: PIL.Image.open({src!r}).convert('RGB').save({out!r}, 'JPEG', quality={q}, optimize=True)"]

    def decode_commands(self, src: str | None = None, out: str = "OUT.png") -> list[str]:
        return [f"python: PIL.Image.open({(src or 'IN.jpg')!r}).convert('RGB').save({out!r})"]


class WebpCodec(Codec):
    """Lossy WebP: cwebp/dwebp when present, Pillow's libwebp otherwise."""

    name, label = "webp", "WebP"
    suffixes = (".webp",)
    quality_meaning = "cwebp -q 0–100 (higher = more bits)"

    def _tools(self) -> bool:
        return shutil.which("cwebp") is not None and shutil.which("dwebp") is not None

    def default_qualities(self) -> list[float]:
        return [5, 20, 40, 60, 80, 95]

    def encode(self, png_path: Path, out_path: Path, quality: float) -> None:
        if self._tools():
            super().encode(png_path, out_path, quality)
            return
        try:
            with Image.open(png_path) as im:
                im.convert("RGB").save(out_path, format="WEBP", quality=float(quality), method=6)
        except (OSError, ValueError, KeyError) as exc:
            raise CodecError(f"WebP encoding failed: {_one_line(str(exc))}") from None

    def decode(self, path: Path, out_png: Path) -> None:
        if self._tools():
            super().decode(path, out_png)
        else:
            _pillow_decode(Path(path), Path(out_png), "WebP")

    def _encode_argvs(self, src: Path, out: Path, quality: float, describe: bool = False) -> list[list[str]]:
        if not self._tools():
            return [["python:", f"PIL.Image.save({str(out)!r}, 'WEBP', quality={_fmt_q(quality)}, method=6)"]]
        return [["cwebp", "-quiet", "-m", "6", "-q", _fmt_q(quality), str(src), "-o", str(out)]]

    def _decode_argvs(self, src: Path, out: Path, describe: bool = False) -> list[list[str]]:
        if not self._tools():
            return [["python:", f"PIL.Image.open({str(src)!r}).save({str(out)!r})"]]
        return [["dwebp", "-quiet", str(src), "-o", str(out)]]


class JxlCodec(Codec):
    """JPEG XL through libjxl's cjxl/djxl (effort 7, distance as the quality knob)."""

    name, label = "jxl", "JPEG XL (libjxl)"
    suffixes = (".jxl",)
    quality_meaning = "cjxl -d Butteraugli distance (lower = more bits)"

    def unavailable_reason(self) -> str | None:
        return _missing("cjxl", "djxl")

    def can_decode(self) -> str | None:
        if shutil.which("djxl") or _has_ffmpeg_codec("decoder", "libjxl"):
            return None
        return "djxl not found on PATH (and ffmpeg has no libjxl decoder)"

    def default_qualities(self) -> list[float]:
        return [12.0, 7.0, 4.0, 2.5, 1.5, 0.8]

    def _encode_argvs(self, src: Path, out: Path, quality: float, describe: bool = False) -> list[list[str]]:
        return [["cjxl", str(src), str(out), "-d", _fmt_q(quality), "-e", "7", "--num_threads=1"]]

    def _decode_argvs(self, src: Path, out: Path, describe: bool = False) -> list[list[str]]:
        if shutil.which("djxl") or describe:
            return [["djxl", str(src), str(out), "--bits_per_sample=8", "--num_threads=1"]]
        return [_ffmpeg_to_png(src, out)]


class AvifCodec(Codec):
    """AVIF through libavif's avifenc/avifdec (4:4:4, constant quantizer)."""

    name, label = "avif", "AVIF (libavif/aom)"
    suffixes = (".avif",)
    quality_meaning = "avifenc --min/--max quantizer 0–63 (lower = more bits)"
    speed = 6

    def unavailable_reason(self) -> str | None:
        return _missing("avifenc", "avifdec")

    def can_decode(self) -> str | None:
        if shutil.which("avifdec"):
            return None
        try:
            from PIL import features

            if features.check("avif"):
                return None
        except Exception:  # noqa: BLE001 - older Pillow: no avif feature key
            pass
        return "avifdec not found on PATH (and Pillow has no AVIF support)"

    def default_qualities(self) -> list[float]:
        return [56, 48, 40, 32, 24, 16]

    def decode(self, path: Path, out_png: Path) -> None:
        if shutil.which("avifdec"):
            super().decode(path, out_png)
        else:
            reason = self.can_decode()
            if reason:
                raise CodecError(reason)
            _pillow_decode(Path(path), Path(out_png), "AVIF")

    def _encode_argvs(self, src: Path, out: Path, quality: float, describe: bool = False) -> list[list[str]]:
        q = _fmt_q(quality)
        return [["avifenc", "-s", str(self.speed), "-j", "1", "-y", "444", "--min", q, "--max", q, str(src), str(out)]]

    def _decode_argvs(self, src: Path, out: Path, describe: bool = False) -> list[list[str]]:
        return [["avifdec", "-d", "8", str(src), str(out)]]


class HevcCodec(Codec):
    """HEVC intra through ffmpeg's libx265: veryslow, tune psnr, constant QP, yuv444p."""

    name, label = "hevc", "HEVC (x265 4:4:4)"
    suffixes = (".hevc", ".h265", ".265")
    quality_meaning = "x265 QP 0–51 (lower = more bits)"

    def unavailable_reason(self) -> str | None:
        if shutil.which("ffmpeg") is None:
            return "ffmpeg not found on PATH"
        if not _has_ffmpeg_codec("encoder", "libx265"):
            return "ffmpeg has no libx265 encoder"
        return None

    def can_decode(self) -> str | None:
        if shutil.which("ffmpeg") is None:
            return "ffmpeg not found on PATH"
        return None if _has_ffmpeg_codec("decoder", "hevc") else "ffmpeg has no HEVC decoder"

    def default_qualities(self) -> list[float]:
        return [42, 37, 32, 27, 22, 17]

    def _encode_argvs(self, src: Path, out: Path, quality: float, describe: bool = False) -> list[list[str]]:
        qp = int(round(quality))
        params = f"keyint=1:qp={qp}:info=0:log-level=error"
        return [
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-vf", _TO_YUV, "-pix_fmt", "yuv444p",
             *_YUV_TAGS, "-c:v", "libx265", "-preset", "veryslow", "-tune", "psnr", "-x265-params", params,
             "-frames:v", "1", "-f", "hevc", str(out)]
        ]  # fmt: skip

    def _decode_argvs(self, src: Path, out: Path, describe: bool = False) -> list[list[str]]:
        return [_ffmpeg_to_png(src, out, fmt="hevc")]


class BpgCodec(Codec):
    """BPG (HEVC-based) through bpgenc/bpgdec with the anchor settings ``-f 444 -b 8``."""

    name, label = "bpg", "BPG"
    suffixes = (".bpg",)
    quality_meaning = "bpgenc -q 0–51 (lower = more bits)"

    def unavailable_reason(self) -> str | None:
        return _missing("bpgenc", "bpgdec")

    def can_decode(self) -> str | None:
        return _missing("bpgdec")

    def default_qualities(self) -> list[float]:
        return [42, 37, 32, 27, 22, 17]

    def _encode_argvs(self, src: Path, out: Path, quality: float, describe: bool = False) -> list[list[str]]:
        return [["bpgenc", "-f", "444", "-b", "8", "-q", str(int(round(quality))), "-o", str(out), str(src)]]

    def _decode_argvs(self, src: Path, out: Path, describe: bool = False) -> list[list[str]]:
        return [["bpgdec", "-b", "8", "-o", str(out), str(src)]]


class VvcCodec(Codec):
    """VVC through Fraunhofer's vvencapp/vvdecapp, with ffmpeg for the RGB↔YUV steps.

    A single frame is always coded intra, so this is the all-intra setting.
    Perceptual QP adaptation is switched off (``--qpa 0``) because we score PSNR.
    4:4:4 is tried first; vvenc builds without 4:4:4 input fall back to 4:2:0,
    and the fallback is recorded in :attr:`last_note`.
    """

    name, label = "vvc", "VVC (vvenc)"
    suffixes = (".266", ".vvc", ".h266")
    quality_meaning = "vvencapp QP 0–63 (lower = more bits)"
    preset = "medium"

    def __init__(self, timeout: float | None = None) -> None:
        super().__init__(timeout)
        self.last_note = ""

    def unavailable_reason(self) -> str | None:
        return _missing("vvencapp", "vvdecapp", "ffmpeg")

    def can_decode(self) -> str | None:
        if shutil.which("vvdecapp") and shutil.which("ffmpeg"):
            return None
        if shutil.which("ffmpeg") and _has_ffmpeg_codec("decoder", "vvc"):
            return None
        return "vvdecapp (or an ffmpeg with a VVC decoder) not found on PATH"

    def default_qualities(self) -> list[float]:
        return [42, 37, 32, 27, 22, 17]

    def _encode_argvs(self, src: Path, out: Path, quality: float, describe: bool = False,
                      chroma: str = "444") -> list[list[str]]:  # fmt: skip
        yuv = out.with_name(out.name + ".yuv")
        w, h = (0, 0) if describe else _image_size(src)
        size = "WxH" if describe else f"{w}x{h}"
        pix = "yuv444p" if chroma == "444" else "yuv420p"
        return [
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-vf", _TO_YUV, "-pix_fmt", pix,
             "-f", "rawvideo", str(yuv)],
            ["vvencapp", "--preset", self.preset, "-i", str(yuv), "-s", size, "-c", f"yuv{chroma}", "-r", "1",
             "-f", "1", "-q", str(int(round(quality))), "--qpa", "0", "-t", "1", "-o", str(out)],
        ]  # fmt: skip

    def encode(self, png_path: Path, out_path: Path, quality: float) -> None:
        png_path, out_path = Path(png_path), Path(out_path)
        reason = self.unavailable_reason()
        if reason:
            raise CodecError(reason)
        self.last_note = ""
        try:
            try:
                for argv in self._encode_argvs(png_path, out_path, quality):
                    run_tool(argv, self.timeout)
            except CodecError as first:
                if "vvencapp" not in str(first):
                    raise
                for argv in self._encode_argvs(png_path, out_path, quality, chroma="420"):
                    run_tool(argv, self.timeout)
                self.last_note = "vvencapp rejected 4:4:4 input; coded 4:2:0"
        finally:
            out_path.with_name(out_path.name + ".yuv").unlink(missing_ok=True)
        _require_output(out_path, self.name)

    def _decode_argvs(self, src: Path, out: Path, describe: bool = False) -> list[list[str]]:
        if shutil.which("vvdecapp") or describe:
            y4m = out.with_name(out.name + ".y4m")
            # y4m carries size/chroma/bit depth; the matrix is the one we encoded with.
            to_rgb = "scale=in_color_matrix=bt709:in_range=full:flags=accurate_rnd+full_chroma_int"
            return [
                ["vvdecapp", "-b", str(src), "--y4m", "-o", str(y4m)],
                ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(y4m), "-frames:v", "1", "-vf", to_rgb,
                 "-pix_fmt", "rgb24", str(out)],
            ]  # fmt: skip
        return [_ffmpeg_to_png(src, out, fmt="vvc")]

    def decode(self, path: Path, out_png: Path) -> None:
        try:
            super().decode(path, out_png)
        finally:
            Path(out_png).with_name(Path(out_png).name + ".y4m").unlink(missing_ok=True)


class J2kCodec(Codec):
    """JPEG 2000 through Pillow's OpenJPEG (decode-only files in compare; encodable too)."""

    name, label = "j2k", "JPEG 2000 (OpenJPEG)"
    suffixes = (".j2k", ".jp2", ".j2c", ".jpc", ".jpx")
    quality_meaning = "compression ratio (higher = fewer bits)"

    def unavailable_reason(self) -> str | None:
        try:
            from PIL import features

            return None if features.check("jpg_2000") else "Pillow was built without OpenJPEG"
        except Exception:  # noqa: BLE001
            return "Pillow was built without OpenJPEG"

    def default_qualities(self) -> list[float]:
        return [200, 100, 50, 30, 20, 14]

    def encode(self, png_path: Path, out_path: Path, quality: float) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise CodecError(reason)
        try:
            with Image.open(png_path) as im:
                im.convert("RGB").save(
                    out_path, format="JPEG2000", quality_mode="rates", quality_layers=[float(quality)],
                    irreversible=True, no_jp2=Path(out_path).suffix.lower() != ".jp2",
                )  # fmt: skip
        except (OSError, ValueError) as exc:
            raise CodecError(f"JPEG 2000 encoding failed: {_one_line(str(exc))}") from None

    def decode(self, path: Path, out_png: Path) -> None:
        if self.unavailable_reason() is None:
            _pillow_decode(Path(path), Path(out_png), "JPEG 2000")
        elif shutil.which("ffmpeg"):
            run_tool(_ffmpeg_to_png(Path(path), Path(out_png)), self.timeout)
        else:
            raise CodecError("neither Pillow's OpenJPEG nor ffmpeg is available")

    def can_decode(self) -> str | None:
        if self.unavailable_reason() is None or shutil.which("ffmpeg"):
            return None
        return "neither Pillow's OpenJPEG nor ffmpeg is available"

    def encode_commands(self, quality: float, src: str = "IN.png", out: str | None = None) -> list[str]:
        return [f"python: PIL.Image.save({(out or 'OUT.j2k')!r}, 'JPEG2000', quality_mode='rates', "
                f"quality_layers=[{_fmt_q(quality)}], irreversible=True)"]  # fmt: skip

    def decode_commands(self, src: str | None = None, out: str = "OUT.png") -> list[str]:
        return [f"python: PIL.Image.open({(src or 'IN.j2k')!r}).convert('RGB').save({out!r})"]


class UdicCodec(Codec):
    """udic itself, through the in-process Python API (``udic.api``, imported lazily)."""

    name, label = "udic", "udic"
    suffixes = (".udic",)
    quality_meaning = "udic quality (see udic.api; higher = more bits)"
    _FALLBACK_QUALITIES = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # The API may lazily load and cache a model; parallel sweep jobs must not race on that.
    _lock = threading.Lock()
    # The adaptation effort of every udic encode in this process: `udic encode`'s default,
    # so a sweep measures what users get (`udic compare --effort` sets it).
    effort: int = DEFAULT_EFFORT

    def _api(self):  # noqa: ANN202 - the module type is dynamic
        try:
            return importlib.import_module("udic.api")
        except Exception as exc:  # noqa: BLE001 - any import failure means "not usable"
            raise CodecError(f"udic.api is not importable: {_one_line(str(exc)) or type(exc).__name__}") from None

    def unavailable_reason(self) -> str | None:
        try:
            api = self._api()
        except CodecError as exc:
            return str(exc)
        missing = [f for f in ("encode", "decode") if not callable(getattr(api, f, None))]
        return f"udic.api lacks {', '.join(missing)}()" if missing else None

    def default_qualities(self) -> list[float]:
        try:
            declared = getattr(self._api(), "DEFAULT_QUALITIES", None)
        except CodecError:
            declared = None
        return [float(q) for q in declared] if declared else list(self._FALLBACK_QUALITIES)

    def encode(self, png_path: Path, out_path: Path, quality: float) -> None:
        api = self._api()
        try:
            with Image.open(png_path) as im, self._lock:
                data = api.encode(im.convert("RGB"), float(quality), effort=self.effort)
        except UdicError:
            raise
        except Exception as exc:  # noqa: BLE001 - surface any API failure as one line
            raise CodecError(f"udic encoding failed: {_one_line(str(exc)) or type(exc).__name__}") from None
        Path(out_path).write_bytes(bytes(data))

    def decode(self, path: Path, out_png: Path) -> None:
        api = self._api()
        try:
            with self._lock:
                result = api.decode(Path(path).read_bytes())
            if getattr(result, "bit_depth", 8) > 8:  # the exact samples: the scorer rounds them as it rounds the source
                api.save_decoded(result, str(out_png), force=True, format="PNG")
            else:
                getattr(result, "image", result).convert("RGB").save(out_png, format="PNG")
        except UdicError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise CodecError(f"udic decoding failed: {_one_line(str(exc)) or type(exc).__name__}") from None

    def encode_commands(self, quality: float, src: str = "IN.png", out: str | None = None) -> list[str]:
        return [f"python: udic.api.encode(PIL.Image.open({src!r}).convert('RGB'), quality={_fmt_q(quality)}, "
                f"effort={self.effort})"
                f" -> {(out or 'OUT.udic')!r}"]  # fmt: skip

    def decode_commands(self, src: str | None = None, out: str = "OUT.png") -> list[str]:
        return [f"python: udic.api.decode(open({(src or 'IN.udic')!r}, 'rb').read()).image.save({out!r})"]


# Registry, in the order reports list codecs.
CODECS: dict[str, type[Codec]] = {
    c.name: c
    for c in (UdicCodec, VvcCodec, BpgCodec, HevcCodec, AvifCodec, JxlCodec, WebpCodec, J2kCodec, JpegCodec)
}

_ALIASES = {"jpg": "jpeg", "h265": "hevc", "x265": "hevc", "h266": "vvc", "vvenc": "vvc", "jpegxl": "jxl",
            "jpeg2000": "j2k", "jp2": "j2k"}  # fmt: skip


def get_codec(name: str, timeout: float | None = None) -> Codec:
    """A fresh adapter by name (aliases like ``jpg``/``x265`` accepted)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in CODECS:
        raise InputError(f"unknown codec {name!r} (known: {', '.join(CODECS)})")
    return CODECS[key](timeout=timeout)


def available_codecs() -> dict[str, str | None]:
    """Every registered codec mapped to ``None`` (usable) or the reason it is not."""
    return {name: cls().unavailable_reason() for name, cls in CODECS.items()}


# --------------------------------------------------------------------------- detection


def _sniff(head: bytes) -> str | None:
    """Codec name from a file's first bytes, or None when the bytes are not conclusive."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "jxl"
    if head.startswith(b"BPG\xfb"):
        return "bpg"
    if head.startswith(b"\xff\x4f\xff\x51") or head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"):
        return "j2k"
    if head[4:8] == b"ftyp":
        box = int.from_bytes(head[:4], "big")
        brands = head[8:12] + head[16 : max(16, min(box, len(head)))]
        if any(brands[i : i + 4] in (b"avif", b"avis") for i in range(0, len(brands), 4)):
            return "avif"
        return None
    # Annex-B elementary streams: find the first start code and read the NAL header.
    for prefix in (b"\x00\x00\x00\x01", b"\x00\x00\x01"):
        if head.startswith(prefix) and len(head) >= len(prefix) + 2:
            b0, b1 = head[len(prefix)], head[len(prefix) + 1]
            hevc_type = (b0 >> 1) & 0x3F
            if b0 & 0x81 == 0 and hevc_type in (32, 33, 34, 35, 39) and b1 == 0x01:
                return "hevc"
            vvc_type = (b1 >> 3) & 0x1F
            if b0 & 0xC0 == 0 and (b1 & 0x07) >= 1 and vvc_type in (14, 15, 16, 17, 20, 23):
                return "vvc"
            return None
    return None


def detect_codec(path: Path) -> Codec | None:
    """The adapter for a compressed file: magic bytes first, then the suffix."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise InputError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    name = _sniff(head)
    if name is None:
        suffix = path.suffix.lower()
        name = next((n for n, cls in CODECS.items() if suffix in cls.suffixes), None)
    return get_codec(name) if name else None


def roundtrip(codec: Codec, png_path: Path, quality: float, workdir: Path) -> tuple[int, Path]:
    """Encode then decode once in ``workdir`` (the caller's, as the decoded PNG it returns lives
    there); returns (compressed bytes, decoded PNG).

    A convenience for quick checks; the comparison engine manages its own files.
    """
    work = Path(workdir)
    out = work / f"rt{codec.suffixes[0]}"
    dec = work / "rt.png"
    codec.encode(Path(png_path), out, quality)
    codec.decode(out, dec)
    return out.stat().st_size, dec
