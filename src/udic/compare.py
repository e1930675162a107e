"""``udic compare``: rate–distortion tables, BD-rates and plots against anchor codecs.

Two modes share one engine:

- **files** — ``udic compare REF.png FILE…``: each already-compressed file is decoded
  by whatever can read it (see :mod:`udic.anchors`) and scored against REF.
- **sweep** — ``udic compare --sweep IMAGE|DIR… --codecs …``: the points are made
  here by running every available encoder at its quality settings, in parallel.

Why it is built this way:
- Results are typed dataclasses (:class:`RDPoint`, :class:`Curve`, :class:`BDResult`,
  :class:`CompareResult`) so the bench report can reuse them without dict-key drift.
- Over a folder, curves are averaged per quality setting (mean bpp, mean PSNR,
  mean MS-SSIM over the images), as Kodak/CLIC results are reported in the
  literature; each folder given is one domain and gets its own curves and BD table.
  A quality setting that failed on any image of a domain is left out of that
  domain's curve (with a note) rather than averaged over fewer images, which would
  bias the mean.
- BD numbers need a curve, so they are reported only for codecs with at least
  :data:`MIN_BD_POINTS` points, against the anchor (default: VVC, else BPG, else JPEG).
- One file or job that fails never stops the rest: it becomes a row with a note.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import partial
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from udic.anchors import CODECS, Codec, UdicCodec, detect_codec, get_codec
from udic.effort import DEFAULT_EFFORT, MAX_EFFORT
from udic.errors import InputError, OutputError, UdicError, UsageError
from udic.imageio import atomic_write_bytes
from udic.metrics import bd_psnr, bd_rate, ms_ssim_rgb, psnr_rgb

__all__ = [
    "ANCHOR_PREFERENCE",
    "DEFAULT_SWEEP_CODECS",
    "MIN_BD_POINTS",
    "BDResult",
    "CompareResult",
    "Curve",
    "RDPoint",
    "average_curves",
    "bd_table",
    "choose_anchor",
    "collect_images",
    "compare_files",
    "file_curves",
    "format_table",
    "load_rgb",
    "parse_qualities",
    "plot_rd",
    "run_sweep",
    "write_csv",
    "write_json",
]

MIN_BD_POINTS = 4
ANCHOR_PREFERENCE: tuple[str, ...] = ("vvc", "bpg", "jpeg")
DEFAULT_SWEEP_CODECS = "udic,jxl,avif,webp,jpeg,hevc,bpg,vvc"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".bmp", ".tif", ".tiff", ".webp"})


# --------------------------------------------------------------------------- data


@dataclass
class RDPoint:
    """One compressed file scored against its reference image."""

    codec: str
    file: str
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    note: str = ""
    image: str = ""
    domain: str = ""
    quality: float | None = None
    ok: bool = True


@dataclass
class Curve:
    """An RD curve of one codec in one domain (per-file points, or per-quality means)."""

    domain: str
    codec: str
    bpp: list[float]
    psnr: list[float]
    ms_ssim: list[float]
    qualities: list[float | None]
    images: int
    note: str = ""
    # Mean bpp of the cheapest setting that decoded every image exactly (PSNR ∞, so it
    # cannot sit on the mean curve), or None.
    lossless_bpp: float | None = None

    @property
    def points(self) -> int:
        return len(self.bpp)


@dataclass
class BDResult:
    """BD-rate (percent, negative = fewer bits) and BD-PSNR (dB) of a codec against the anchor."""

    domain: str
    codec: str
    anchor: str
    points: int
    bd_rate: float | None
    bd_psnr: float | None
    note: str = ""


@dataclass
class CompareResult:
    """Everything one ``udic compare`` run found, ready for the table, CSV, JSON and plot."""

    mode: str
    points: list[RDPoint]
    curves: list[Curve]
    bd: list[BDResult]
    anchors: dict[str, str | None]
    notes: list[str] = field(default_factory=list)
    commands: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    reference: str = ""


# --------------------------------------------------------------------------- images


def load_rgb(path: str | os.PathLike[str], allow_large: bool = False, max_pixels: int | None = None) -> np.ndarray:
    """Any Pillow-readable image as uint8 HxWx3, read as ``udic encode`` reads its input: EXIF
    orientation applied, alpha dropped, gray repeated, and 16-bit samples rounded to 8 bits the
    same way for the reference and every decoded file (Pillow alone truncates 16-bit colour and
    clips 16-bit gray), under udic's input pixel limit."""
    from .imageio import DEFAULT_MAX_PIXELS, load_image

    p = Path(path)
    try:
        loaded = load_image(p, allow_large=allow_large, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    except InputError as exc:
        raise InputError(f"{p}: {exc}" if "no such file" in str(exc) else f"{p.name}: not a readable image ({exc})") \
            from None
    if loaded.wide is not None and loaded.wide.shape[2] >= 3:
        return ((loaded.wide[..., :3].astype(np.int64) + 128) // 257).astype(np.uint8)
    return loaded.rgb


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _score(ref: np.ndarray, decoded_png: Path) -> tuple[float, float, str]:
    """PSNR, MS-SSIM and a note for a decoded PNG (NaN + note when not comparable)."""
    dec = load_rgb(decoded_png, max_pixels=max(ref.shape[0] * ref.shape[1], 1))  # (its size must be the reference's)
    if dec.shape != ref.shape:
        raise InputError(
            f"decoded size {dec.shape[1]}x{dec.shape[0]} differs from the reference's {ref.shape[1]}x{ref.shape[0]}"
        )
    psnr = psnr_rgb(ref, dec)
    try:
        ms = ms_ssim_rgb(ref, dec)
        note = ""
    except ValueError as exc:
        ms, note = math.nan, f"no MS-SSIM: {exc}"
    return psnr, ms, note


def _failed(codec: str, file: str, size: int, pixels: int, note: str, **kw: Any) -> RDPoint:
    bpp = size * 8.0 / pixels if size and pixels else math.nan
    return RDPoint(codec, file, size, bpp, math.nan, math.nan, note=note, ok=False, **kw)


# --------------------------------------------------------------------------- parallel runner

# Progress of a run: (label, jobs done, jobs in all), after every job.  The engine draws
# nothing itself; the command line passes a TerminalProgress on a terminal only.
Progress = Callable[[str, int, int], None]


class TerminalProgress:
    """``encoding [#####-----] 12/40`` rewritten in place on stderr, cleared at the end."""

    def __call__(self, label: str, done: int, total: int) -> None:
        width = 24
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r{label}  [{'#' * filled}{'-' * (width - filled)}]  {done}/{total}")
        if done >= total:
            sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def _run_all(tasks: Sequence[Callable[[], RDPoint]], jobs: int, progress: Progress | None, label: str) -> list[RDPoint]:
    """Run independent tasks on ``jobs`` threads (codec work is in subprocesses or releases the GIL)."""
    results: list[RDPoint | None] = [None] * len(tasks)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(task): i for i, task in enumerate(tasks)}
        done = 0
        try:
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                done += 1
                if progress is not None:
                    progress(label, done, len(tasks))
        except BaseException:
            for fut in futures:
                fut.cancel()
            from udic.anchors import kill_running_tools

            kill_running_tools()  # (their threads wait in communicate(); the pool's exit waits for them)
            raise
    return [r for r in results if r is not None]


def _as_progress(progress: Progress | bool | None) -> Progress | None:
    if progress is True:
        return TerminalProgress() if sys.stderr.isatty() else None
    return progress or None


# --------------------------------------------------------------------------- files mode


def _decode_and_score(ref: np.ndarray, path: Path, workdir: Path, timeout: float | None) -> RDPoint:
    pixels = ref.shape[0] * ref.shape[1]
    try:
        size = path.stat().st_size
    except OSError as exc:
        return _failed("unknown", str(path), 0, pixels, f"cannot read: {exc.strerror or exc}")
    try:
        codec = detect_codec(path)
    except UdicError as exc:
        return _failed("unknown", str(path), size, pixels, _one_line(exc))
    if codec is None:
        return _score_image_file(ref, path, size, pixels)
    if timeout is not None:
        codec.timeout = timeout
    out = Path(tempfile.mkdtemp(prefix="dec-", dir=workdir)) / "decoded.png"
    try:
        codec.decode(path.resolve(), out)  # (absolute: a name like '-x.webp' never reads as an option)
        psnr, ms, note = _score(ref, out)
    except UdicError as exc:
        return _failed(codec.name, str(path), size, pixels, f"cannot decode: {_one_line(exc)}")
    except Exception as exc:  # noqa: BLE001 - a broken file must not stop the table
        return _failed(codec.name, str(path), size, pixels, f"cannot decode: {type(exc).__name__}: {_one_line(exc)}")
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    return RDPoint(codec.name, str(path), size, size * 8.0 / pixels, psnr, ms, note=note)


def _image_format(path: Path) -> str | None:
    """The format name (png, gif, bmp, tiff, …) of a file Pillow can open, else None."""
    try:
        with Image.open(path) as im:
            return (im.format or "").lower() or None
    except Exception:  # noqa: BLE001 - Pillow raises many types (a decompression bomb among them)
        return None


def _score_image_file(ref: np.ndarray, path: Path, size: int, pixels: int) -> RDPoint:
    """A file no codec adapter claims but Pillow reads (a PNG, maybe from pngquant or another
    tool's decoder): scored under its format's name, its pixels as they are (``_score``)."""
    fmt = _image_format(path)
    if fmt is None:
        return _failed("unknown", str(path), size, pixels, "unrecognised format (not a compressed file or an image "
                                                           "Pillow can read)")
    try:
        psnr, ms, note = _score(ref, path)
    except UdicError as exc:
        return _failed(fmt, str(path), size, pixels, f"cannot decode: {_one_line(exc)}")
    return RDPoint(fmt, str(path), size, size * 8.0 / pixels, psnr, ms, note=note)


def compare_files(
    reference: str | os.PathLike[str],
    files: Sequence[str | os.PathLike[str]],
    anchor: str | None = None,
    jobs: int = 1,
    progress: Progress | bool | None = None,
    timeout: float | None = None,
    allow_large: bool = False,
) -> CompareResult:
    """Score already-compressed ``files`` against ``reference``; group by codec; BD where possible.
    ``allow_large``: a reference over udic's 64-megapixel input limit is read (``--allow-large``)."""
    ref_path = Path(reference)
    ref = load_rgb(ref_path, allow_large=allow_large)
    with tempfile.TemporaryDirectory(prefix="udic-compare-") as tmp:
        tasks = [partial(_decode_and_score, ref, Path(f), Path(tmp), timeout) for f in files]
        points = _run_all(tasks, jobs, _as_progress(progress), "decoding")
    for p in points:
        p.image = str(ref_path)
    curves = file_curves(points)
    bd, anchors, notes = bd_table(curves, anchor)
    commands = {}
    for name in sorted({p.codec for p in points if p.codec in CODECS}, key=_codec_rank):
        commands[name] = {"decode": get_codec(name).decode_commands()}
    return CompareResult("files", points, curves, bd, anchors, notes, commands, reference=str(ref_path))


def _codec_rank(name: str) -> tuple[int, str]:
    order = list(CODECS)
    return (order.index(name) if name in order else len(order), name)


def _usable(p: RDPoint) -> bool:
    return p.ok and math.isfinite(p.bpp) and p.bpp > 0 and math.isfinite(p.psnr)


def file_curves(points: Iterable[RDPoint]) -> list[Curve]:
    """One curve per (domain, codec) from individual points, sorted by rate (files mode)."""
    groups: dict[tuple[str, str], list[RDPoint]] = {}
    for p in points:
        if p.ok:
            groups.setdefault((p.domain, p.codec), []).append(p)
    curves = []
    for (domain, codec), pts in sorted(groups.items(), key=lambda kv: (kv[0][0], _codec_rank(kv[0][1]))):
        usable = sorted((p for p in pts if _usable(p)), key=lambda p: p.bpp)
        note = "lossless points left out of the curve" if len(usable) < len(pts) else ""
        curves.append(
            Curve(
                domain,
                codec,
                [p.bpp for p in usable],
                [p.psnr for p in usable],
                [p.ms_ssim for p in usable],
                [p.quality for p in usable],
                images=len({p.image for p in usable}),
                note=note,
            )
        )
    return curves


# --------------------------------------------------------------------------- sweep mode


def collect_images(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[str, list[Path]]]:
    """Group inputs into domains: a folder is one domain; loose images join their parent folder's."""
    domains: dict[Path, list[Path]] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            imgs = sorted(
                c
                for c in p.iterdir()
                if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES and not c.name.startswith(".")
            )
            if not imgs:
                raise InputError(f"{p}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            key = p.resolve()
        elif p.is_file():
            imgs, key = [p], p.resolve().parent
        else:
            raise InputError(f"{p}: no such file or folder")
        bucket = domains.setdefault(key, [])
        seen = {q.resolve() for q in bucket}
        bucket.extend(q for q in imgs if q.resolve() not in seen)
    named: list[tuple[str, list[Path]]] = []
    used: dict[str, int] = {}
    for key, imgs in domains.items():
        base = key.name or str(key)
        used[base] = used.get(base, 0) + 1
        named.append((base if used[base] == 1 else f"{base}#{used[base]}", imgs))
    return named


def parse_qualities(specs: Iterable[str]) -> dict[str, list[float]]:
    """``["jpeg=10,30,50", "hevc=37,32"]`` → per-codec quality lists (``UsageError`` if malformed)."""
    out: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise UsageError(f"--qualities expects CODEC=Q1,Q2,…, got {spec!r}")
        try:
            codec = get_codec(name).name
        except UdicError as exc:
            raise UsageError(str(exc)) from None
        try:
            qualities = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"--qualities {spec!r}: the values must be numbers") from None
        if not all(math.isfinite(q) for q in qualities):
            raise UsageError(f"--qualities {spec!r}: the values must be finite numbers")
        # (a repeated value would count one image twice in the per-quality means)
        out[codec] = list(dict.fromkeys(qualities))
    return out


def _configured(name: str, timeout: float | None, effort: int) -> Codec:
    """A fresh codec adapter; udic's gets this run's effort on the instance, never on the class."""
    codec = get_codec(name, timeout=timeout)
    if isinstance(codec, UdicCodec):
        codec.effort = effort
    return codec


def _q_tag(q: float) -> str:
    return str(int(q)) if float(q).is_integer() else f"{q:g}"


def _sweep_one(
    codec_name: str,
    quality: float,
    domain: str,
    image: Path,
    src_png: Path,
    work: Path,
    keep: Path | None,
    timeout: float | None,
    effort: int = DEFAULT_EFFORT,
    force: bool = False,
) -> RDPoint:
    """One job: encode one image at one setting, decode it back, score it.  The reference is read
    from ``src_png`` here, so a sweep holds only its running jobs' images, not the whole set's."""
    codec = _configured(codec_name, timeout, effort)
    ref = load_rgb(src_png, allow_large=True)  # (the sweep's own copy of an image it admitted)
    pixels = ref.shape[0] * ref.shape[1]
    # (reports, --keep; the image's index first: two images of a folder may share a stem)
    name = f"{src_png.stem}-{image.stem}.{codec.name}.q{_q_tag(quality)}{codec.suffixes[0]}"
    job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=work))
    # The tools see plain names: an image's own ('-x', 'a%d', 't:1') could read as an option, an
    # ffmpeg image sequence or a protocol.
    enc = job_dir / f"encoded{codec.suffixes[0]}"
    dec = job_dir / "decoded.png"
    common = dict(image=str(image), domain=domain, quality=quality)
    try:
        try:
            codec.encode(src_png, enc, quality)
        except UdicError as exc:
            return _failed(codec.name, name, 0, pixels, f"encode failed: {_one_line(exc)}", **common)
        size = enc.stat().st_size
        try:
            codec.decode(enc, dec)
            psnr, ms, note = _score(ref, dec)
        except UdicError as exc:
            return _failed(codec.name, name, size, pixels, f"decode failed: {_one_line(exc)}", **common)
        extra = getattr(codec, "last_note", "")
        note = "; ".join(n for n in (extra, note) if n)
        file = name
        if keep is not None:
            target = keep / domain / name
            try:  # atomically, never over an existing file unless --force; a failed copy keeps the measure
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, enc.read_bytes(), force=force)
                file = str(target)
            except (UdicError, OSError) as exc:
                note = "; ".join(n for n in (note, f"not kept: {_one_line(exc)}") if n)
        return RDPoint(codec.name, file, size, size * 8.0 / pixels, psnr, ms, note=note, **common)
    except Exception as exc:  # noqa: BLE001 - keep the sweep going, report the job
        return _failed(codec.name, name, 0, pixels, f"{type(exc).__name__}: {_one_line(exc)}", **common)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def run_sweep(
    paths: Sequence[str | os.PathLike[str]],
    codecs: Sequence[str],
    qualities: dict[str, list[float]] | None = None,
    anchor: str | None = None,
    jobs: int = 1,
    progress: Progress | bool | None = None,
    keep: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    effort: int = DEFAULT_EFFORT,
    force: bool = False,
    allow_large: bool = False,
) -> CompareResult:
    """Encode every image with every available codec at each quality; average per domain; BD.

    ``effort``: udic's adaptation effort for this sweep (default: ``udic encode``'s).  ``force``:
    files kept in ``keep`` may replace existing ones.  ``allow_large``: images over udic's
    64-megapixel input limit are read.
    """
    qualities = qualities or {}
    domains = collect_images(paths)
    notes: list[str] = []
    chosen: list[Codec] = []
    for name in codecs:
        codec = _configured(name, timeout, effort)
        if any(c.name == codec.name for c in chosen):
            continue
        reason = codec.unavailable_reason()
        if reason:
            notes.append(f"skipped {codec.name}: {reason}")
            continue
        chosen.append(codec)
    commands = {
        c.name: {
            "encode": [cmd for q in qualities.get(c.name, c.default_qualities()) for cmd in c.encode_commands(q)],
            "decode": c.decode_commands(),
        }
        for c in chosen
    }
    keep_dir = Path(keep) if keep is not None else None
    points: list[RDPoint] = []
    with tempfile.TemporaryDirectory(prefix="udic-sweep-") as tmp:
        work = Path(tmp)
        tasks: list[Callable[[], RDPoint]] = []
        for d_index, (domain, images) in enumerate(domains):
            for i_index, image in enumerate(images):
                src = work / f"d{d_index}" / f"{i_index:04d}.png"
                src.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(load_rgb(image, allow_large=allow_large)).save(src, format="PNG")  # every encoder sees the same 8-bit RGB
                for codec in chosen:
                    for q in qualities.get(codec.name, codec.default_qualities()):
                        tasks.append(partial(_sweep_one, codec.name, float(q), domain, image, src, work,
                                             keep_dir, timeout, effort, force))  # fmt: skip
        if tasks:
            points = _run_all(tasks, jobs, _as_progress(progress), "encoding")
    curves, avg_notes = average_curves(points, {d: len(imgs) for d, imgs in domains})
    notes.extend(avg_notes)
    bd, anchors, bd_notes = bd_table(curves, anchor)
    notes.extend(bd_notes)
    return CompareResult("sweep", points, curves, bd, anchors, notes, commands)


def average_curves(
    points: Iterable[RDPoint], images_per_domain: dict[str, int] | None = None
) -> tuple[list[Curve], list[str]]:
    """Per (domain, codec): mean bpp / PSNR / MS-SSIM over images at each quality setting.

    A setting is kept only if it succeeded (finite PSNR) on every image of the
    domain; ``images_per_domain`` gives that count (default: images seen in points).
    """
    pts = list(points)
    counts = dict(images_per_domain or {})
    for p in pts:
        if p.domain not in counts:
            counts[p.domain] = len({q.image for q in pts if q.domain == p.domain})
    groups: dict[tuple[str, str], dict[float | None, list[RDPoint]]] = {}
    for p in pts:
        groups.setdefault((p.domain, p.codec), {}).setdefault(p.quality, []).append(p)
    curves: list[Curve] = []
    notes: list[str] = []
    for (domain, codec), by_q in sorted(groups.items(), key=lambda kv: (kv[0][0], _codec_rank(kv[0][1]))):
        need = counts[domain]
        rows = []
        lossless_bpp: float | None = None
        for q, plist in by_q.items():
            exact = [p for p in plist if p.ok and math.isfinite(p.bpp) and p.bpp > 0 and math.isinf(p.psnr)]
            if len(exact) >= need:
                bpp = float(np.mean([p.bpp for p in exact]))
                lossless_bpp = bpp if lossless_bpp is None else min(lossless_bpp, bpp)
                continue
            good = [p for p in plist if _usable(p)]
            if len(good) < need:
                where = f"{domain}: " if domain else ""
                notes.append(
                    f"{where}{codec} q={_q_tag(q) if q is not None else '?'} left out of the mean curve "
                    f"({need - len(good)}/{need} images failed or were lossless)"
                )
                continue
            ms = [p.ms_ssim for p in good]
            rows.append(
                (
                    float(np.mean([p.bpp for p in good])),
                    float(np.mean([p.psnr for p in good])),
                    float(np.mean(ms)) if all(math.isfinite(m) for m in ms) else math.nan,
                    q,
                )
            )
        rows.sort(key=lambda r: r[0])
        curves.append(
            Curve(
                domain,
                codec,
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [r[3] for r in rows],
                images=need,
                lossless_bpp=lossless_bpp,
            )
        )
    return curves, notes


# --------------------------------------------------------------------------- BD table


def choose_anchor(codecs_with_curves: Iterable[str], requested: str | None = None) -> str | None:
    """The anchor codec: ``requested`` if given, else the first of VVC, BPG, JPEG present."""
    present = set(codecs_with_curves)
    if requested:
        return get_codec(requested).name
    return next((c for c in ANCHOR_PREFERENCE if c in present), None)


def bd_table(
    curves: Sequence[Curve], anchor: str | None = None
) -> tuple[list[BDResult], dict[str, str | None], list[str]]:
    """BD-rate/BD-PSNR of every codec with ≥ MIN_BD_POINTS points against the anchor, per domain."""
    results: list[BDResult] = []
    anchors: dict[str, str | None] = {}
    notes: list[str] = []
    domains = sorted({c.domain for c in curves})
    for domain in domains:
        where = f"{domain}: " if domain else ""
        dc = {c.codec: c for c in curves if c.domain == domain}
        eligible = [name for name, c in dc.items() if c.points >= MIN_BD_POINTS]
        name = choose_anchor(eligible, anchor)
        if name is None:
            anchors[domain] = None
            notes.append(f"{where}no BD table: no anchor (VVC, BPG or JPEG) with ≥ {MIN_BD_POINTS} points")
            continue
        base = dc.get(name)
        if base is None or base.points < MIN_BD_POINTS:
            anchors[domain] = None
            have = base.points if base else 0
            notes.append(f"{where}no BD table: anchor {name} has {have} usable points (needs {MIN_BD_POINTS})")
            continue
        anchors[domain] = name
        for codec, cur in sorted(dc.items(), key=lambda kv: _codec_rank(kv[0])):
            if codec == name:
                continue
            if cur.points < MIN_BD_POINTS:
                notes.append(f"{where}no BD for {codec}: {cur.points} usable points (needs {MIN_BD_POINTS})")
                continue
            # The two deltas use different overlaps (quality vs rate), so one may exist alone.
            values: list[float | None] = []
            why: list[str] = []
            for label, fn in (("BD-rate", bd_rate), ("BD-PSNR", bd_psnr)):
                try:
                    values.append(fn(base.bpp, base.psnr, cur.bpp, cur.psnr))
                except ValueError as exc:
                    values.append(None)
                    why.append(f"no {label}: {exc}")
            results.append(BDResult(domain, codec, name, cur.points, values[0], values[1], note="; ".join(why)))
    return results, anchors, notes


# --------------------------------------------------------------------------- output


def _num(value: float, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, fmt)


def _render(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _bd_lines(result: CompareResult, domain: str) -> list[str]:
    rows = [b for b in result.bd if b.domain == domain]
    anchor = result.anchors.get(domain)
    if not anchor:
        return []
    out = ["", f"BD vs {anchor} (PCHIP, overlapping PSNR range; negative BD-rate = fewer bits):"]
    table = [
        [
            b.codec,
            str(b.points),
            "-" if b.bd_rate is None else f"{b.bd_rate:+.2f} %",
            "-" if b.bd_psnr is None else f"{b.bd_psnr:+.3f} dB",
            b.note,
        ]
        for b in rows
    ]
    if not table:
        return out + ["  (no other codec has enough points)"]
    return out + _render(["codec", "points", "BD-rate", "BD-PSNR", "note"], table, {1, 2, 3})


def format_table(result: CompareResult, show_commands: bool = False) -> str:
    """The human-readable report printed on the terminal."""
    lines: list[str] = []
    if result.mode == "files":
        if result.reference:
            lines.append(f"Reference: {result.reference}")
        pts = sorted(result.points, key=lambda p: (_codec_rank(p.codec), p.bpp if math.isfinite(p.bpp) else 1e300))
        rows = [
            [p.codec, p.file, str(p.bytes), _num(p.bpp, ".4f"), _num(p.psnr, ".2f"), _num(p.ms_ssim, ".4f"), p.note]
            for p in pts
        ]
        lines += _render(["codec", "file", "bytes", "bpp", "PSNR-RGB", "MS-SSIM", "note"], rows, {2, 3, 4, 5})
        lines += _bd_lines(result, "")
    else:
        for domain in sorted({c.domain for c in result.curves} | {p.domain for p in result.points}):
            dcurves = [c for c in result.curves if c.domain == domain]
            n_img = max((c.images for c in dcurves), default=0)
            lines.append(f"Domain {domain} ({n_img} image{'s' if n_img != 1 else ''}; mean over images per setting)")
            rows = []
            for c in dcurves:
                for q, b, ps, ms in zip(c.qualities, c.bpp, c.psnr, c.ms_ssim):
                    q_text = "-" if q is None else _q_tag(q)
                    rows.append([c.codec, q_text, _num(b, ".4f"), _num(ps, ".2f"), _num(ms, ".4f")])
            lines += _render(["codec", "quality", "bpp", "PSNR-RGB", "MS-SSIM"], rows, {1, 2, 3, 4})
            lines += _bd_lines(result, domain)
            lines.append("")
        failed = [p for p in result.points if not p.ok]
        if failed:
            lines.append("Failed jobs:")
            for p in failed:
                lines.append(f"  {p.domain}/{Path(p.image).name} {p.codec} q={_q_tag(p.quality or 0)}: {p.note}")
    if result.notes:
        lines += ["", "Notes:"] + [f"  {n}" for n in result.notes]
    if show_commands and result.commands:
        lines += ["", "Commands:"]
        for name, cmds in result.commands.items():
            for kind in ("encode", "decode"):
                for cmd in cmds.get(kind, []):
                    lines.append(f"  {name} {kind}: {cmd}")
    return "\n".join(lines).rstrip() + "\n"


def _clean(value: Any, key: str = "") -> Any:
    """JSON has no NaN/inf: a lossless PSNR (+inf) is the string "inf", as in `udic encode --json`
    and the CSV; any other non-finite number (a failed point's) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value == math.inf and key == "psnr" else None
    if isinstance(value, dict):
        return {k: _clean(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, key) for v in value]
    return value


@contextlib.contextmanager
def _open_for_write(path: str | os.PathLike[str], force: bool = True):  # noqa: ANN202 - a text file object
    """A text buffer written to ``path`` atomically when the block ends (never a partial report;
    without ``force`` an existing file is kept and the write refused)."""
    buf = io.StringIO(newline="")
    yield buf
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"), force=force)


def write_json(result: CompareResult, path: str | os.PathLike[str], force: bool = True) -> None:
    """Full result as JSON (points, curves, BD, anchors, notes, command lines)."""
    data = _clean(asdict(result))
    with _open_for_write(path, force) as fh:
        json.dump(data, fh, indent=2, allow_nan=False)
        fh.write("\n")


CSV_FIELDS = [
    "kind", "domain", "codec", "quality", "image", "file", "bytes", "bpp", "psnr", "ms_ssim",
    "anchor", "bd_rate_pct", "bd_psnr_db", "points", "note",
]  # fmt: skip


def write_csv(result: CompareResult, path: str | os.PathLike[str], force: bool = True) -> None:
    """One flat table: ``kind`` is ``point`` (per file), ``mean`` (sweep curves) or ``bd``."""

    def f(v: float | None) -> str:
        return "" if v is None or not math.isfinite(v) else repr(float(v))

    with _open_for_write(path, force) as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for p in result.points:
            w.writerow({"kind": "point", "domain": p.domain, "codec": p.codec,
                        "quality": "" if p.quality is None else _q_tag(p.quality), "image": p.image, "file": p.file,
                        "bytes": p.bytes, "bpp": f(p.bpp), "psnr": "inf" if p.psnr == math.inf else f(p.psnr),
                        "ms_ssim": f(p.ms_ssim), "note": p.note})  # fmt: skip
        if result.mode == "sweep":
            for c in result.curves:
                for q, b, ps, ms in zip(c.qualities, c.bpp, c.psnr, c.ms_ssim):
                    w.writerow({"kind": "mean", "domain": c.domain, "codec": c.codec,
                                "quality": "" if q is None else _q_tag(q), "bpp": f(b), "psnr": f(ps),
                                "ms_ssim": f(ms), "points": c.images})  # fmt: skip
        for b in result.bd:
            w.writerow({"kind": "bd", "domain": b.domain, "codec": b.codec, "anchor": b.anchor,
                        "bd_rate_pct": f(b.bd_rate), "bd_psnr_db": f(b.bd_psnr), "points": b.points,
                        "note": b.note})  # fmt: skip


def require_pyplot(path: str | os.PathLike[str] | None = None) -> None:
    """Fail before a long sweep, not after it, when --plot cannot be drawn (no matplotlib, or a
    file suffix it cannot write)."""
    plt = _pyplot()
    if path is None:
        return
    kind = Path(path).suffix[1:].lower() or "png"
    fig = plt.figure()
    try:
        known = fig.canvas.get_supported_filetypes()
    finally:
        plt.close(fig)
    if kind not in known:
        raise UsageError(f"--plot {path}: matplotlib cannot write .{kind} (use one of: "
                         f"{', '.join(sorted(known))})")


def _pyplot():  # noqa: ANN202 - the matplotlib.pyplot module
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib (pip install 'udic[plot]')") from None
    return plt


def _plot_title(result: CompareResult, domain: str) -> str:
    """The image's name when a panel shows one image; the folder's name and count otherwise."""
    if result.mode == "files":
        return Path(result.reference).name if result.reference else "RD"
    images = sorted({p.image for p in result.points if p.domain == domain and p.image})
    if len(images) == 1:
        return Path(images[0]).name
    return f"{domain} ({len(images)} images)" if images else (domain or "RD")


def plot_rd(result: CompareResult, path: str | os.PathLike[str], force: bool = True) -> None:
    """bpp vs PSNR-RGB, one line per codec, one panel per domain; format from the suffix."""
    plt = _pyplot()
    domains = sorted({c.domain for c in result.curves if c.points})
    if not domains:
        raise OutputError(f"{path}: nothing to plot (no usable RD points)")
    fig, axes = plt.subplots(1, len(domains), figsize=(6.4 * len(domains), 4.8), squeeze=False)
    for ax, domain in zip(axes[0], domains):
        anchor = result.anchors.get(domain)
        for c in result.curves:
            if c.domain != domain or not c.points:
                continue
            style = "--" if c.codec == anchor else "-"
            label = f"{c.codec} (anchor)" if c.codec == anchor else c.codec
            ax.plot(c.bpp, c.psnr, style, marker="o", markersize=3, label=label)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("PSNR-RGB (dB)")
        ax.set_title(_plot_title(result, domain))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=Path(path).suffix[1:].lower() or "png")
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: cannot draw the plot ({_one_line(exc)})") from None
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue(), force=force)
