"""The ``udic`` command line: a thin layer over ``udic.api``.

Conventions: errors are one line on stderr (``udic: FILE: problem``) with a non-zero
exit; every argument and file check runs first, before torch is imported or a model
loaded; outputs are written atomically and never overwritten without ``--force``;
``-`` is stdin/stdout (binary never goes to a terminal without ``--force``); several
inputs need ``-o DIR``; ``--json`` prints one JSON object per input (to stdout, or
stderr when stdout carries image data).

This module imports only click, the standard library and torch-free udic modules;
the batch engine lives in :mod:`udic.batch`, the work in :mod:`udic.api`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

# numpy's OpenBLAS keeps a thread per core that spins after its calls (and after numpy's import):
# on 2 cores it took ~half the second core for nothing.  udic makes no BLAS call worth a thread
# (the pixel coder's least squares sum in int64), and its lossless encoder puts that core to work
# (``lossless.workers``): one BLAS thread, set before anything imports numpy.  (torch's threads
# are its own: ``--threads``.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from . import checks, modes  # noqa: E402  (after the environment is set)
from .batch import BatchOptions, Job, run_batch, say, unexpected
from .checks import STDIO, display_name
from .effort import DEFAULT_EFFORT, MAX_EFFORT, describe_effort
from .errors import InputError, OutputError, UdicError, UsageError

DEFAULT_QUALITY = 3.0  # api.DEFAULT_QUALITY, without importing api for --help


def _stderr_is_terminal() -> bool:
    """Live progress and the one-line summary are for people, not for logs or pipes."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _setup_threads(threads: int | None) -> None:
    if threads:
        import torch

        from .lossless import workers

        torch.set_num_threads(threads)
        workers.set_workers(threads)  # the lossless encoder's processes


# The most an input may hold.  Why a cap: stdin and devices have no size to check first, and
# `udic encode /dev/zero` would otherwise grow until the machine ran out of memory.
MAX_INPUT_BYTES = 1 << 31


def _read_input(src: str) -> bytes:
    if src == STDIO:
        return _read_capped(sys.stdin.buffer)
    path = Path(src)
    if path.is_dir():
        raise InputError("is a directory")
    try:
        with path.open("rb") as f:
            return _read_capped(f)
    except OSError as exc:
        raise checks.input_error(exc) from None


def _read_capped(stream) -> bytes:  # noqa: ANN001
    """All of ``stream``, refused past MAX_INPUT_BYTES: a regular file by its size before any
    read, a pipe or device as soon as it passes the cap (read in 1 MiB pieces: one read of the
    cap would reserve it)."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, AttributeError, ValueError):  # (no descriptor: a test's in-memory stdin)
        info = None
    if info is not None and stat.S_ISREG(info.st_mode):
        if info.st_size > MAX_INPUT_BYTES:
            raise InputError(f"input is over {MAX_INPUT_BYTES >> 30} GiB")
        return stream.read()
    buffer = bytearray()
    while piece := stream.read(1 << 20):
        buffer += piece
        if len(buffer) > MAX_INPUT_BYTES:
            raise InputError(f"input is over {MAX_INPUT_BYTES >> 30} GiB")
    return bytes(buffer)


def _looks_like_a_file(output: str) -> bool:
    suffix = Path(output).suffix.lower()
    return suffix == checks.UDIC_SUFFIX or suffix in checks.OUTPUT_FORMATS


def _plan_outputs(inputs: tuple[str, ...], output: str | None, suffix: str) -> tuple[list[tuple[str, str]], str | None]:
    """Pair each input with its output path; several inputs need -o DIR.

    Returns the pairs and the folder the outputs go into when it may have to be
    created: it is created only when the first output is written, so a run that
    writes nothing leaves no empty folder behind.
    """
    if not inputs:
        raise UsageError("no input files")
    if len(inputs) > 1:
        if STDIO in inputs:
            raise UsageError("'-' (stdin) cannot be combined with other inputs")
        if output is None:
            pairs = [(i, _beside(i, suffix)) for i in inputs]
            _refuse_shared_outputs(pairs, "; use -o DIR")
            return pairs, None
        if output == STDIO:
            raise UsageError("several inputs cannot all go to stdout; use -o DIR")
        if not Path(output).is_dir() and _looks_like_a_file(output):
            raise UsageError(f"-o {output}: several inputs need -o DIR, and this names a file")
        checks.check_output_dir(output)
        pairs = [(i, str(Path(output) / (_stem(i) + suffix))) for i in inputs]
        _refuse_shared_outputs(pairs)
        return pairs, output
    src = inputs[0]
    if output is None:
        return [(src, STDIO if src == STDIO else _beside(src, suffix))], None
    if output != STDIO and (Path(output).is_dir() or output.endswith(("/", os.sep))):
        checks.check_output_dir(output)
        stem = "stdin" if src == STDIO else _stem(src)
        return [(src, str(Path(output) / (stem + suffix)))], output
    return [(src, output)], None


def _refuse_shared_outputs(pairs: list[tuple[str, str]], hint: str = "") -> None:
    """Two inputs may not be written to one output, however its path is written (a.png, ./a.png)."""
    taken: set[str] = set()
    for _, dest in pairs:
        if os.path.realpath(dest) in taken:
            raise UsageError(f"two inputs would both be written to {dest}{hint}")
        taken.add(os.path.realpath(dest))


def _named(src: str) -> Path:
    """``src`` as a path with a name ("." and ".." have none: their resolved form does), so that
    its output can be named and the file checks can refuse it as a folder, like any other."""
    path = Path(src)
    return path if path.name and path.name != ".." else path.resolve()


def _stem(src: str) -> str:
    """The name an input's output takes."""
    return _named(src).stem


def _beside(src: str, suffix: str) -> str:
    """The default output of an input: its name with ``suffix``, in its folder."""
    return str(_named(src).with_suffix(suffix))


def _make_dir(directory: str | None) -> None:
    if directory is not None:
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"-o {directory}: cannot create the folder ({exc.strerror})") from None


_PHASE_LABELS = {"latents": "adapting latents", "adapters": "adapting adapters", "tiles": "tiles",
                 "evaluate": "coding candidates", "pixels": "trying pixel coding"}


class _StepProgress:
    """One self-rewriting stderr line (phase, step, RD cost), drawn on a terminal only."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = False

    def __call__(self, phase: str, step: int, total: int, cost: float) -> None:
        width = 20
        filled = int(width * step / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        line = f"{self.label}: {_PHASE_LABELS.get(phase, phase):<17} [{bar}] {step}/{total}"
        if math.isfinite(cost):
            line += f"  RD {cost:.4f}"
        sys.stderr.write("\r" + line)
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _live_progress(src: str, job: Job, quiet: bool) -> _StepProgress | None:
    if quiet or job.parallel or not _stderr_is_terminal():
        return None
    return _StepProgress("<stdin>" if src == STDIO else Path(src).name)


def _fail(where: str, exc: UdicError) -> SystemExit:
    say(where, str(exc))
    return SystemExit(exc.exit_code)


def common_options(f: Callable) -> Callable:
    f = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON results.")(f)
    f = click.option("--quiet", is_flag=True, help="No progress, summary or notices.")(f)
    f = click.option("--force", "-f", is_flag=True,
                     help="Overwrite existing outputs; allow binary output to a terminal.")(f)
    f = click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="CPU threads for torch, and processes for the lossless encoder (default: every CPU).")(f)
    f = click.option(
        "--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
        help="Float transforms in bf16: ~3x faster on CPUs with bf16 units, ~0.05 dB lower PSNR.",
    )(f)
    f = click.option(
        "--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True,
        help="Where the networks run (integer entropy parameters are exact on any device).",
    )(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="udic")
def main() -> None:
    """udic: a universal deep image codec."""


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Output .udic file, '-' for stdout, or a directory for several inputs.")
@click.option("-q", "--quality", type=float, default=None,
              help="Rate index, 0 (smallest) … 6 (the default network's best; fractions interpolate), then 7 = "
              "near-lossless ±4, 8 = ±2, 9 = ±1, 10 = lossless (a model's own rates shift these; from effort "
              "1, on a photo, the high-fidelity model answers -q 5 and up and the near-lossless steps where its file "
              "is smaller and no worse, and a fraction between 6 and 7 asks it for a file that far from the top "
              "rate's PSNR to ±4's). Default 3.")
@click.option("--lossless", is_flag=True, help="Code the exact pixels (8 or 16 bits, alpha, gray): decodes "
              "identically everywhere; needs no model.")
@click.option("--max-error", type=click.IntRange(0, 255), default=None,
              help="Near-lossless: every colour sample within ±N of the source (alpha exact); 0 = lossless.")
@click.option("--lossy-only", is_flag=True,
              help="Never answer with a pixel-coded file (by default, from effort 1, a lossless or "
              "near-lossless file is written instead when it is no larger and no worse).")
@click.option("--target-bpp", type=float, default=None,
              help="Search the quality that gives this many bits per pixel (within 3 %). A budget above "
              "what the network uses goes to the high-fidelity model (no --model given) or buys the most "
              "faithful near-lossless or lossless file that fits.")
@click.option("--target-psnr", type=float, default=None,
              help="Search the quality that gives this PSNR in dB (within 0.1 dB). A PSNR above what the "
              "network reaches is met by the high-fidelity model (no --model given; up to ~42 dB on photos) "
              "or by near-lossless or lossless coding, whichever is smaller (with --lossy-only: the best "
              "learned quality, with a note, exit 0, as cwebp -psnr does).")
@click.option("--model", default=None, help="Model id, name or .safetensors path (default: packaged).")
@click.option("--effort", type=click.IntRange(0, MAX_EFFORT), default=DEFAULT_EFFORT, show_default=True,
              help="Per-image adaptation (never worse than 0): "
              + "; ".join(f"{e} = {describe_effort(e)}" for e in range(MAX_EFFORT + 1)) + ".")
@click.option("--time-budget", type=click.FloatRange(min=0), default=None,
              help="Seconds for an image's adaptation, counted from the start of its encode and shared by "
                   "a target search's encodes (stops early, still writes a valid file; the bytes then depend "
                   "on the machine's speed).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for adaptation (deterministic encodes without --time-budget).")
@click.option("--allow-large", is_flag=True, help="Accept images over the 64-megapixel limit.")
@click.option("--tile", type=click.IntRange(min=0), default=None,
              help="Code in tiles of this many pixels (multiple of 64; 0 = never). Default: 1024 for images over 4 MP.")
@click.option("--strip", is_flag=True,
              help="Leave out EXIF and XMP metadata (camera, date, GPS, edits); the ICC profile is kept.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Files processed in parallel (each worker has its own model copy and one CPU thread, so "
                   "the files are those of --threads 1).")
@common_options
def encode(inputs: tuple[str, ...], output: str | None, quality: float | None, lossless: bool,
           max_error: int | None, lossy_only: bool, target_bpp: float | None,
           target_psnr: float | None, model: str | None, effort: int, time_budget: float | None, seed: int,
           allow_large: bool, tile: int | None, strip: bool, jobs: int, device: str, precision: str,
           threads: int | None, force: bool, quiet: bool, as_json: bool) -> None:
    """Compress images to .udic files."""
    q = DEFAULT_QUALITY if quality is None else quality
    try:
        # Cheap checks first (no torch, no model): options, names, then the registry.
        if target_bpp is not None and target_psnr is not None:
            raise UsageError("use --target-bpp or --target-psnr, not both")
        if (target_bpp is not None or target_psnr is not None) and quality is not None:
            raise UsageError("-q and a --target-… option cannot be combined")
        exact = lossless or max_error is not None
        if exact and (quality is not None or target_bpp is not None or target_psnr is not None):
            raise UsageError("--lossless/--max-error cannot be combined with -q or a --target-… option")
        if lossless and max_error:
            raise UsageError("--lossless and --max-error N cannot be combined (use one)")
        if exact and lossy_only:
            raise UsageError("--lossy-only contradicts --lossless/--max-error")
        if time_budget is not None and not math.isfinite(time_budget):
            raise UsageError(f"--time-budget {time_budget}: give a number of seconds")
        checks.check_tile(tile)
        pairs, out_dir = _plan_outputs(inputs, output, checks.UDIC_SUFFIX)
        for _, dest in pairs:
            checks.check_encode_output(dest)
        checks.check_binary_stdout(pairs[0][1], force)
        top = None if exact else checks.check_quality(q, model)
        pixel_step = None if top is None else modes.pixel_max_error(q, top)
        if lossy_only and pixel_step is not None and target_bpp is None and target_psnr is None:
            raise UsageError(f"-q {q:g} is above the network's top rate ({top:g}): it asks for a pixel-coded "
                             "file, which --lossy-only rules out")
        if exact and model is not None:
            from . import hub

            hub.locate(model)  # a named model must exist, even where the pixel coder needs none
        from .modelchoice import fidelity_model_for, model_for

        if not exact and (pixel_step is None or (pixel_step > 0 and fidelity_model_for(model) is not None)):
            checks.check_device(device)  # a near-lossless -q may still load the high-fidelity model
        target = None
        if target_bpp is not None or target_psnr is not None:
            from .ratecontrol import RateTarget

            target = RateTarget("bpp", target_bpp) if target_bpp is not None else RateTarget("psnr", target_psnr)
    except UdicError as exc:
        raise _fail("encode", exc) from None

    # The PSNR a report shows costs a decode where the encoder did not already make one.
    report_psnr = as_json or (not quiet and _stderr_is_terminal())

    def work(src: str, dest: str, job: Job):  # noqa: ANN202 - an api.EncodeRecord
        t0 = time.perf_counter()
        checks.check_input(src)
        checks.check_output(dest, force, src, folder_planned=out_dir is not None)
        raw = _read_input(src)
        from . import api
        from .imageio import atomic_write_bytes, load_image
        from .metadata import Metadata

        with job.pillow():
            image = load_image(raw, allow_large=allow_large)
        if strip:
            image = dataclasses.replace(image, metadata=Metadata())
        # (The notes said are the file's, once it is made: they start from the image's, less
        # those that do not hold for it, e.g. "reduced 16-bit" for a pixel-coded file.)
        if not job.parallel:
            _setup_threads(threads)

        def load(model_id: str):  # noqa: ANN202 - a Codec, from this job's cache
            return job.codecs.get(model_id, device, progress=not quiet and not job.parallel, precision=precision)

        # the high-fidelity model, for requests beyond the top rate: loaded only when tried
        fidelity = api.fidelity_loader(model, load)
        if exact or pixel_step is not None:  # the pixel coder: no model, no torch
            # -q above the top rate writes the very file --max-error N / --lossless would, unless
            # (effort >= 1, no model named, a photo-like file) the high-fidelity model's file is
            # no larger and no worse: only then is a model loaded (its file carries its PSNR).
            step = (max_error or 0) if exact else modes.ladder_error(image, pixel_step)
            result = api.encode_pixels(image, step, effort)
            if fidelity is not None and not exact and not lossy_only:
                on_step = job.check if job.parallel else _live_progress(src, job, quiet)
                try:
                    def default():  # noqa: ANN202 - 6 < -q < 7 on a photo: the top rate's PSNR
                        return load(model_for(image.rgb, model, effort))

                    result = api.fidelity_for_pixels(result, fidelity, image, q, effort, time_budget, seed,
                                                     on_step, tile, top, default)
                finally:
                    if isinstance(on_step, _StepProgress):
                        on_step.close()
            if not quiet:
                for notice in result.notices:
                    job.say(f"note: {notice}")
            if dest != STDIO:
                _make_dir(out_dir)
            atomic_write_bytes(dest, result.data, force=force)
            seconds = time.perf_counter() - t0
            return api.EncodeRecord(src, dest, result, effort, seconds,
                                    api.encoded_psnr(image, result) if report_psnr else None)
        codec = load(model_for(image.rgb, model, effort))  # synthetic art gets the model trained for it
        if top is None and not 0 <= q <= modes.max_quality(codec.max_quality):  # weights were not on disk
            raise UsageError(f"-q {q:g} is out of range 0…{modes.max_quality(codec.max_quality):g}")
        on_step = job.check if job.parallel else _live_progress(src, job, quiet)
        try:
            result = api.encode_with(codec, image, q, effort, time_budget, seed, on_step, tile, target,
                                     choose_mode=not lossy_only, fidelity=fidelity)
        finally:
            if isinstance(on_step, _StepProgress):
                on_step.close()
        if not quiet:
            for notice in result.notices:  # the image's (e.g. an orientation applied), then the encoder's
                job.say(f"note: {notice}")
        if dest != STDIO:
            _make_dir(out_dir)
        atomic_write_bytes(dest, result.data, force=force)  # "-" is stdout
        seconds = time.perf_counter() - t0
        return api.EncodeRecord(src, dest, result, effort, seconds,
                                api.encoded_psnr(image, result, codec) if report_psnr else None)

    def summary(job: Job, record) -> None:  # noqa: ANN001 - an api.EncodeRecord
        h = record.result.header
        where = "stdout" if record.output == STDIO else record.output
        what = _mode_label(record.result)
        fidelity = "" if record.psnr is None or math.isinf(record.psnr) else f"{record.psnr:.2f} dB, "
        say(job.name, f"{len(record.result.data)} B, {record.result.bpp:.3f} bpp, {fidelity}{h.width}x{h.height}, "
                      f"{what}, effort {record.effort} -> {where}")

    show_summary = not quiet and not as_json and _stderr_is_terminal()
    run_batch(pairs, BatchOptions("encode", jobs, threads, quiet, as_json, summary if show_summary else None,
                                  uses_models=not exact), work)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Output image (format from suffix), '-' for stdout (PNG), or a directory.")
@click.option("--format", "fmt", default=None, help="Output format when it cannot come from a suffix (default PNG).")
@click.option("--model", default=None, help="Weights to decode with (default: found by the model id in the file).")
@click.option("--allow-large", is_flag=True, help="Accept files over the 64-megapixel limit.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Files processed in parallel (each worker has its own model copy and one CPU thread).")
@common_options
def decode(inputs: tuple[str, ...], output: str | None, fmt: str | None, model: str | None, allow_large: bool,
           jobs: int, device: str, precision: str, threads: int | None, force: bool, quiet: bool,
           as_json: bool) -> None:
    """Decompress .udic files to images."""
    try:
        if fmt is not None:
            checks.output_format(STDIO, fmt)
        suffix = "." + (fmt or "png").lower().lstrip(".")
        pairs, out_dir = _plan_outputs(inputs, output, suffix)
        formats = {dest: checks.output_format(dest, fmt) for _, dest in pairs}
        checks.check_binary_stdout(pairs[0][1], force)
        if model is not None:
            from . import hub

            hub.locate(model)  # an unknown --model is refused before any file is read
        checks.check_device(device)
    except UdicError as exc:
        raise _fail("decode", exc) from None

    def work(src: str, dest: str, job: Job):  # noqa: ANN202 - an api.DecodeRecord
        checks.check_input(src)
        if output is None and not force and dest != STDIO and os.path.lexists(dest):
            # The default name is usually the image the file was made from: say how to keep it.
            raise OutputError(f"{dest} exists: name the output with -o (or use --force to replace it)")
        checks.check_output(dest, force, src, folder_planned=out_dir is not None)
        data = _read_input(src)
        from . import api

        if not job.parallel:
            _setup_threads(threads)
        live = _live_progress(src, job, quiet)
        try:
            result = api.decode(data, device=device, allow_large=allow_large, progress=not quiet and not job.parallel,
                                model=model, precision=precision, cache=job.codecs,
                                on_tile=None if live is None else (lambda d, t: live("tiles", d, t, math.nan)))
        finally:
            if live is not None:
                live.close()
        if result.image.mode in ("RGBA", "LA", "PA") and formats[dest] not in checks.ALPHA_FORMATS and not quiet:
            job.say(f"note: alpha dropped: {formats[dest]} keeps no transparency (use .png, .webp or .tiff)")
        if dest != STDIO:
            _make_dir(out_dir)
        for notice in api.save_decoded(result, dest, force=force, format=fmt or ("PNG" if dest == STDIO else None)):
            if not quiet:
                job.say(f"note: {notice}")
        return api.DecodeRecord(src, dest, result)

    def summary(job: Job, record) -> None:  # noqa: ANN001 - an api.DecodeRecord
        h = record.result.header
        where = "stdout" if record.output == STDIO else record.output
        what = _mode_label(record.result)
        say(job.name, f"{h.width}x{h.height}, {what}, {record.result.seconds:.2f} s -> {where}")

    show_summary = not quiet and not as_json and _stderr_is_terminal()
    run_batch(pairs, BatchOptions("decode", jobs, threads, quiet, as_json, summary if show_summary else None), work)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(inputs: tuple[str, ...], as_json: bool) -> None:
    """Describe .udic files without decoding them."""
    if inputs.count(STDIO) > 1:  # (stdin is read once: a second '-' would be an empty file)
        raise _fail("info", UsageError("'-' (stdin) can be given once"))
    from . import api

    failures = 0
    for src in inputs:
        name = display_name(src)
        try:
            fi = api.info(_read_input(src))
        except UdicError as exc:
            failures += 1
            say(name, str(exc))
            continue
        if as_json:
            click.echo(json.dumps(fi.to_json(src)))
            continue
        flags = [n for n, on in ((f"reduced resolution (coded at {fi.coded_size}, upsampled x2)", fi.coded_size),
                                 ("adapters", fi.adapters), ("loop filter", fi.loop_filter), ("alpha", fi.alpha),
                                 ("icc", fi.icc), (f"exif {fi.exif_bytes} B", fi.exif_bytes),
                                 (f"xmp {fi.xmp_bytes} B", fi.xmp_bytes)) if on]
        click.echo(f"{name}:")
        click.echo(f"  size        {fi.width}x{fi.height} {fi.colour}")
        click.echo(f"  bytes       {fi.bytes} ({fi.bpp:.4f} bpp)")
        click.echo(f"  mode        {fi.mode}" + (f" ({fi.mode_note})" if fi.mode_note else ""))
        if fi.mode == "learned":
            click.echo(f"  model       {fi.model_id}")
            click.echo(f"  quality     {fi.quality:g}")
        else:
            click.echo(f"  samples     {fi.bit_depth}-bit, {fi.pixel_coding}")
        click.echo(f"  features    {', '.join(flags) if flags else 'none'}")
        click.echo(f"  adaptation  effort {fi.effort}"
                   + (f", adapters {fi.adapter_bytes} B" if fi.adapters else ", no adapters")
                   + (f", loop filter {fi.loop_filter_bytes} B" if fi.loop_filter else ", no loop filter")
                   + (f" ({fi.loop_filter_classes} activity classes)" if fi.loop_filter_classes > 1 else ""))
        click.echo(f"  tiles       {f'{fi.tile}x{fi.tile} px' if fi.tile else 'none (one piece)'}")
        click.echo("  sections    " + ", ".join(f"{k} {v} B" for k, v in fi.sections.items()))
        click.echo(f"  overhead    {fi.overhead_bytes} B (header {fi.header_bytes} B)")
        # The header's latent_crc covers the decoded integers: latents, or a pixel file's samples.
        click.echo(f"  {'latent crc ' if fi.mode == 'learned' else 'sample crc '} {fi.latent_crc}")
        click.echo(f"  version     {fi.version}")
        for problem in fi.damaged:
            click.echo(f"  damaged     {problem}")
    if failures:
        raise SystemExit(1)


def _mode_label(result) -> str:  # noqa: ANN001 - an encode or decode result
    """The summary lines' name for a file's mode: its quality, or its pixel coding."""
    h = result.header
    if h.mode == "learned":
        return f"quality {h.quality:g}"
    return "lossless" if result.max_error == 0 else f"near-lossless ±{result.max_error}"


def _model_role(model_id: str, default: str | None, newer: bool = False) -> str:
    """What a model is for, in a user's words (the registry's description is how it was trained).
    ``newer``: registered after the default (a candidate that did not beat it everywhere)."""
    from .modelchoice import HIGH_FIDELITY_MODEL, SYNTHETIC_MODEL

    if model_id == default:
        return "default" + (": photos and synthetic art" if model_id == SYNTHETIC_MODEL else "")
    if model_id == SYNTHETIC_MODEL:
        return "synthetic art (chosen for it from effort 1)"
    if model_id == HIGH_FIDELITY_MODEL:
        return "high fidelity: photos near and beyond the default's top rate"
    if newer:
        return "newer candidate, not the default (--verbose says why)"
    return "earlier model, kept so that its files decode"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--verbose", "-v", is_flag=True, help="Also say how each model was trained.")
def models(as_json: bool, verbose: bool) -> None:
    """List known models, what each is for and where it is available (* = the default)."""
    from . import hub

    try:
        default, _ = hub.load_registry()
        rows = hub.list_models()
    except UdicError as exc:
        say("models", str(exc))
        raise SystemExit(1) from None
    from .modelchoice import HIGH_FIDELITY_MODEL

    at_default = next((i for i, (e, _) in enumerate(rows) if e.id == default), len(rows))
    # a model registered before the high-fidelity one it led to is superseded, not a candidate
    at_hifi = next((i for i, (e, _) in enumerate(rows) if e.id == HIGH_FIDELITY_MODEL), -1)

    def role(i: int, model_id: str) -> str:
        return _model_role(model_id, default, newer=i > max(at_default, at_hifi))

    if as_json:
        click.echo(json.dumps([
            {"id": e.id, "name": e.name, "size": e.size, "status": status, "default": e.id == default,
             "role": role(i, e.id), "description": e.description} for i, (e, status) in enumerate(rows)
        ]))
        return
    if not rows:
        click.echo("no models registered")
        return
    # The default first, then newest first (the registry lists models oldest first).
    ordered = sorted(enumerate(rows), key=lambda r: (r[1][0].id != default, -r[0]))
    click.echo(f"  {'id':<16}  {'name':<24} {'size':>9}  {'where':<12} use")
    for i, (e, status) in ordered:
        mark = "*" if e.id == default else " "
        click.echo(f"{mark} {e.id}  {e.name:<24} {e.size / 1e6:6.1f} MB  {status:<12} {role(i, e.id)}")
        if verbose and e.description:
            click.echo(f"{'':20}{e.description}")


# ---- compare -------------------------------------------------------------------------------

SWEEP_CODECS = "udic,jxl,avif,webp,jpeg,hevc,bpg,vvc"  # compare.DEFAULT_SWEEP_CODECS, for --help without numpy


@main.command("compare")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--sweep", is_flag=True, help="Generate the points: encode PATHs (images or folders) with --codecs.")
@click.option("--codecs", default=SWEEP_CODECS, show_default=True,
              help="Comma-separated codecs for --sweep; missing tools are skipped with a note.")  # fmt: skip
@click.option("--qualities", "quality_specs", multiple=True, metavar="CODEC=Q1,Q2,…",
              help="Override a codec's quality settings (repeatable).")  # fmt: skip
@click.option("--anchor", default=None, help="Anchor codec for BD-rate (default: vvc, else bpg, else jpeg).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a CSV file (*.csv; '-': stdout, the table then goes to stderr).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a JSON file (*.json; '-': stdout, the table then goes to stderr).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw bpp vs PSNR (rd.png, rd.svg, …; needs matplotlib).")  # fmt: skip
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=1), help="Parallel jobs.")
@click.option("--keep", "keep_dir", type=click.Path(file_okay=False, path_type=Path),
              help="With --sweep: keep the compressed files in this folder.")  # fmt: skip
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds allowed per codec tool run.")  # fmt: skip
@click.option("--effort", type=click.IntRange(0, MAX_EFFORT), default=DEFAULT_EFFORT, show_default=True,
              help="With --sweep: udic's adaptation effort (as in udic encode).")
@click.option("--show-commands", is_flag=True, help="List the exact codec command lines used.")
@click.option("--allow-large", is_flag=True, help="Accept images over the 64-megapixel limit.")
@click.option("--force", "-f", is_flag=True, help="Overwrite existing --csv/--json/--plot files and kept files.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def compare_command(paths: tuple[Path, ...], sweep: bool, codecs: str, quality_specs: tuple[str, ...],
                    anchor: str | None, csv_path: Path | None, json_path: Path | None, plot_path: Path | None,
                    jobs: int, keep_dir: Path | None, timeout: float, effort: int, show_commands: bool,
                    allow_large: bool, force: bool, quiet: bool) -> None:
    """Rate–distortion comparison against other codecs.

    \b
    udic compare REF.png FILE...            score compressed files of REF
    udic compare --sweep IMAGE|DIR... [--codecs udic,jxl,...]
                                            encode with each codec and compare

    Exit status 1 when any point could not be measured (the table and reports still stand).
    """
    reports = [(opt, p) for opt, p in (("--csv", csv_path), ("--json", json_path), ("--plot", plot_path)) if p]
    _check_compare_reports(reports, paths, force)
    if not math.isfinite(timeout):
        raise UsageError(f"--timeout {timeout:g}: give a finite number of seconds")
    from . import compare as cmp
    from .anchors import get_codec

    if anchor:
        try:
            anchor = get_codec(anchor).name
        except UdicError as exc:
            raise UsageError(f"--anchor: {exc}") from None
    if plot_path is not None:
        cmp.require_pyplot(plot_path)  # fail before a long sweep, not after it
    progress = None if quiet or not _stderr_is_terminal() else cmp.TerminalProgress()
    if sweep:
        names = [c for c in (s.strip() for s in codecs.split(",")) if c]
        if not names:
            raise UsageError("--codecs is empty")
        try:
            for n in names:
                get_codec(n)
        except UdicError as exc:
            raise UsageError(f"--codecs: {exc}") from None
        if keep_dir is not None:  # before the work: a folder that cannot be made fails now, not per job
            try:
                keep_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"--keep {keep_dir}: cannot create the folder ({exc.strerror or exc})") from None
            if not os.access(keep_dir, os.W_OK | os.X_OK):
                raise OutputError(f"--keep {keep_dir}: the folder is not writable")
        result = cmp.run_sweep(paths, names, cmp.parse_qualities(quality_specs), anchor, jobs, progress, keep_dir,
                               timeout, effort=effort, force=force, allow_large=allow_large)
    else:
        if quality_specs or keep_dir is not None or effort != DEFAULT_EFFORT:
            raise UsageError("--qualities, --keep and --effort only apply with --sweep")
        if len(paths) < 2:
            raise UsageError("give a reference image and at least one compressed file (or use --sweep)")
        result = cmp.compare_files(paths[0], paths[1:], anchor, jobs, progress, timeout, allow_large=allow_large)
    # The table goes to stderr when a report takes stdout, so that `--json - | jq` reads JSON only.
    click.echo(cmp.format_table(result, show_commands), nl=False, err=STDIO in (str(csv_path), str(json_path)))
    if csv_path is not None:
        cmp.write_csv(result, csv_path, force)
    if json_path is not None:
        cmp.write_json(result, json_path, force)
    if not any(p.ok for p in result.points):
        raise InputError("no point could be measured (see the notes above)")
    if plot_path is not None:
        cmp.plot_rd(result, plot_path, force)
    failed = sum(not p.ok for p in result.points)
    if failed:  # the table and reports stand; the exit status tells a script that something is missing
        raise InputError(f"{failed} of {len(result.points)} points could not be measured (see the notes above)")


_REPORT_SUFFIXES = {"--csv": ".csv", "--json": ".json"}


def _check_compare_reports(reports: list[tuple[str, Path]], paths: tuple[Path, ...], force: bool) -> None:
    """Before any work: a report never replaces a compared file or another report, and --csv /
    --json name files of their kind (or '-', stdout): `--json` given as a bare flag before the
    reference would otherwise take the reference's name and, with --force, overwrite it."""
    seen: list[tuple[str, Path]] = []
    for opt, report in reports:
        if str(report) == STDIO and opt in _REPORT_SUFFIXES:
            if any(str(other) == STDIO for _, other in seen):
                raise UsageError("only one of --csv and --json can go to stdout ('-')")
            seen.append((opt, report))
            continue
        if any(checks.same_file(str(src), str(report)) for src in paths):
            raise UsageError(f"{opt} {report} is one of the files to compare: refusing to overwrite it")
        suffix = _REPORT_SUFFIXES.get(opt)
        if suffix is not None and report.suffix.lower() != suffix:
            raise UsageError(f"{opt} {report}: the report's name must end in {suffix} (or be '-' for stdout)")
        for other_opt, other in seen:
            if str(other) != STDIO and (other == report or checks.same_file(str(other), str(report))):
                raise UsageError(f"{opt} and {other_opt} name the same file ({report})")
        checks.check_output(str(report), force)
        seen.append((opt, report))


def run() -> None:
    """Console entry point: no traceback ever reaches the user."""
    try:
        main(standalone_mode=False, prog_name="udic")  # also under python -m udic
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        click.echo("udic: interrupted", err=True)
        raise SystemExit(130) from None
    except click.ClickException as exc:
        # One line in udic's own shape, "udic: encode: problem" (click would print the usage block).
        ctx = getattr(exc, "ctx", None)
        path = ctx.command_path.split() if ctx is not None else ["udic"]
        where = ": ".join(["udic", *path[1:]])
        hint = f" (see '{' '.join(path)} --help')" if ctx is not None else ""
        message = " ".join(exc.format_message().split()).rstrip(".")
        click.echo(f"{where}: {message}{hint}", err=True)
        raise SystemExit(exc.exit_code) from None
    except SystemExit:
        raise
    except KeyboardInterrupt:
        click.echo("udic: interrupted", err=True)
        raise SystemExit(130) from None
    except UdicError as exc:
        click.echo(f"udic: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:  # pragma: no cover - last resort
        click.echo(f"udic: {unexpected(exc)}", err=True)
        raise SystemExit(3) from None


if __name__ == "__main__":  # pragma: no cover
    run()
