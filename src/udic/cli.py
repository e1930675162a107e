"""The ``udic`` command line: a thin layer over ``udic.api``.

Conventions: errors are one line on stderr (``udic: FILE: problem``) with a non-zero
exit; outputs are written atomically and never overwritten without ``--force``;
``-`` is stdin/stdout; several inputs need ``-o DIR``; ``--json`` prints one JSON
object per input (to stdout, or stderr when stdout carries image data).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path

import click

from .container import Flags
from .effort import DEFAULT_EFFORT, MAX_EFFORT, describe_effort
from .errors import InputError, OutputError, UdicError, UsageError
from .metadata import Metadata


STDIO = "-"


@dataclass
class Common:
    device: str
    threads: int | None
    force: bool
    quiet: bool
    as_json: bool
    jobs: int = 1


def _setup_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _err(name: str, message: str) -> None:
    click.echo(f"udic: {name}: {message}", err=True)


def _read_input(src: str) -> bytes:
    if src == STDIO:
        return sys.stdin.buffer.read()
    path = Path(src)
    if path.is_dir():
        raise InputError("is a directory")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})") from None


def _plan_outputs(inputs: tuple[str, ...], output: str | None, suffix: str) -> list[tuple[str, str]]:
    """Pair each input with its output path; several inputs need -o DIR."""
    if not inputs:
        raise UsageError("no input files")
    if len(inputs) > 1:
        if STDIO in inputs:
            raise UsageError("'-' (stdin) cannot be combined with other inputs")
        if output is None:
            pairs = [(i, str(Path(i).with_suffix(suffix))) for i in inputs]
            dests = [d for _, d in pairs]
            for d in dests:
                if dests.count(d) > 1:
                    raise UsageError(f"two inputs would both be written to {d}; use -o DIR")
            return pairs
        if output == STDIO:
            raise UsageError("several inputs cannot all go to stdout; use -o DIR")
        out_dir = Path(output)
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"-o {output}: several inputs need -o DIR, and this is a file")
        out_dir.mkdir(parents=True, exist_ok=True)
        pairs = []
        seen: set[str] = set()
        for i in inputs:
            dest = str(out_dir / (Path(i).stem + suffix))
            if dest in seen:
                raise UsageError(f"two inputs would both be written to {dest}")
            seen.add(dest)
            pairs.append((i, dest))
        return pairs
    src = inputs[0]
    if output is None:
        return [(src, STDIO if src == STDIO else str(Path(src).with_suffix(suffix)))]
    if output != STDIO and (Path(output).is_dir() or output.endswith(("/", os.sep))):
        Path(output).mkdir(parents=True, exist_ok=True)
        stem = "stdin" if src == STDIO else Path(src).stem
        return [(src, str(Path(output) / (stem + suffix)))]
    return [(src, output)]


_PHASE_LABELS = {"latents": "adapting latents", "adapters": "adapting adapters", "tiles": "tiles"}


class _StepProgress:
    """One self-rewriting stderr line: phase, step and (when adapting) the current RD cost."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.shown = False
        self.last_phase = ""

    def __call__(self, phase: str, step: int, total: int, cost: float) -> None:
        if phase == "evaluate":
            return
        if not self.tty and phase == self.last_phase and step < total:
            return  # not a terminal: one line per phase is enough
        self.last_phase = phase
        width = 20
        filled = int(width * step / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        line = f"{self.label}: {_PHASE_LABELS.get(phase, phase):<17} [{bar}] {step}/{total}"
        if math.isfinite(cost):
            line += f"  RD {cost:.4f}"
        click.echo(("\r" + line) if self.tty else line, err=True, nl=not self.tty)
        self.shown = True

    def close(self) -> None:
        if self.shown and self.tty:
            click.echo(err=True)


@contextmanager
def _progress(items: list, label: str, quiet: bool) -> Iterator:
    if quiet or len(items) < 2:
        yield items
        return
    with click.progressbar(items, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar


# ---- batches ------------------------------------------------------------------------------
#
# A batch runs ``work(src, dest, job)`` per (input, output) pair, one after another or, with
# ``--jobs N``, on N worker threads (torch releases the GIL in its kernels).  Either way the
# reports — notes, error lines, JSON lines — come out in input order, one bad file never
# stops the others, a summary line closes the run, the exit code is 1 if any file failed,
# and an interruption (SIGINT) leaves only complete outputs behind and exits 130.


class _Cancelled(BaseException):
    """Raised inside a worker once the batch is interrupted; never escapes ``_run_batch``."""


_CANCELLED = object()  # outcome of an item that never ran (or stopped) because of an interruption


@dataclass
class _Job:
    """What one item's ``work`` may use besides its paths.

    ``say(message)`` reports a one-line note about the item: printed at once in a
    serial batch, and in input order with the item's outcome in a parallel one.
    ``parallel`` means work runs on a worker thread: it must use ``_job_codec`` (a
    Codec holds rate state and is not thread-safe), ``pillow()`` around image loading,
    and show no live progress.  ``check()`` raises once the batch is interrupted.
    """

    name: str
    parallel: bool = False
    stop: threading.Event | None = None
    claimed: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def say(self, message: str) -> None:
        if self.parallel:
            self.notes.append(message)
        else:
            _err(self.name, message)

    def check(self, *_: object) -> None:
        if self.stop is not None and self.stop.is_set():
            raise _Cancelled

    @contextmanager
    def pillow(self) -> Iterator[None]:
        """``load_image`` toggles Pillow's global bomb limit: one worker at a time."""
        if not self.parallel:
            yield
            return
        with _PILLOW_LOCK:
            yield


_PILLOW_LOCK = threading.Lock()
_CODEC_LOCK = threading.Lock()  # one model load (or download) at a time
_worker_state = threading.local()


def _job_codec(model: str | None, device: str, progress: bool, job: _Job):
    """The codec for this item: the process-wide one, or the worker thread's own."""
    from . import api

    if not job.parallel:
        return api.get_codec(model, device, progress)
    codecs = getattr(_worker_state, "codecs", None)
    if codecs is None:
        codecs = _worker_state.codecs = {}
    key = (model, device)
    if key not in codecs:
        from .codec import Codec

        with _CODEC_LOCK:
            # The main thread's cached codec is idle during the batch: the first worker
            # that needs it takes it, every other worker loads its own copy.
            codec = api.get_codec(model, device, progress=False)
            if id(codec) in job.claimed:
                codec = Codec.load(model, device=device, progress=False)
                codec.precision = api.PRECISION
            job.claimed.add(id(codec))
        codecs[key] = codec
        codecs[(codec.model_id, device)] = codec
    return codecs[key]


def _encode_loaded(image, quality: float, model: str | None, device: str, effort: int,
                   time_budget: float | None, seed: int, on_step, job: _Job, tile: int | None = None,
                   target=None):
    """``api.encode_image`` on this item's codec."""
    from . import api

    codec = _job_codec(model, device, not job.parallel, job)
    return api.encode_with(codec, image, quality, effort, time_budget, seed, on_step, tile, target)


def _decode_bytes(data: bytes, device: str, allow_large: bool, progress: bool, model: str | None, job: _Job,
                  on_tile: Callable[[int, int], None] | None = None):
    """``api.decode`` on this item's codec."""
    from . import api

    if not job.parallel:
        return api.decode(data, device=device, allow_large=allow_large, progress=progress, model=model,
                          on_tile=on_tile)
    from . import container as ctr

    max_pixels = ctr.MAX_DIMENSION**2 if allow_large else ctr.DEFAULT_MAX_PIXELS
    header = ctr.parse(data, max_pixels=max_pixels).header
    codec = _job_codec(model if model is not None else header.model_id, device, False, job)
    return codec.decode(data, max_pixels=max_pixels, progress=on_tile)


def _run_one(work: Callable[[str, str, _Job], dict], src: str, dest: str, job: _Job,
             after: "Future | None" = None) -> tuple[object, str | None]:
    """(result, None) or (None, one-line error) or (_CANCELLED, None); never raises in a worker."""
    try:
        if after is not None:  # an earlier item writes the same output: let it go first
            try:
                after.result()
            except CancelledError:
                return _CANCELLED, None
        job.check()
        return work(src, dest, job), None
    except _Cancelled:
        return _CANCELLED, None
    except UdicError as exc:  # one bad file never stops the batch
        return None, str(exc)
    except Exception as exc:
        return None, _unexpected(exc)


class _SigintFlag:
    """While installed, SIGINT sets ``stop`` instead of raising; ``wait`` raises it safely."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.hit = False
        self._old = None
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (an embedding app): keep its handling
            self._old = None

    def _handle(self, signum: int, frame: object) -> None:
        self.hit = True
        self.stop.set()

    def wait(self, future: Future) -> tuple[object, str | None]:
        while True:
            if self.hit:
                raise KeyboardInterrupt
            try:
                outcome = future.result(timeout=0.05)
            except FuturesTimeout:
                continue
            if self.hit:  # the interrupt landed meanwhile: the caller reports done items itself
                raise KeyboardInterrupt
            return outcome

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


def _remove_temp_files(dest: str) -> None:
    """Belt and braces after an interruption: drop any temp file of an output being written.

    ``imageio.atomic_write_bytes`` removes its own temp file on every exception; this only
    matters if the signal landed between the temp file's creation and that bookkeeping.
    The pattern is the one ``atomic_write_bytes`` uses: ``.<name>.<random>.udic-tmp``.
    """
    if dest == STDIO:
        return
    path = Path(dest)
    try:
        for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.udic-tmp"):
            with suppress(OSError):
                tmp.unlink()
    except OSError:
        pass


def _run_batch(
    pairs: list[tuple[str, str]],
    common: Common,
    label: str,
    work: Callable[[str, str, _Job], dict],
) -> None:
    """Run ``work`` per (input, output) pair; keep going after failures; summarise."""
    verb = label.split()[0]
    failures = 0
    results: list[dict] = []
    json_stream = sys.stderr if any(o == STDIO for _, o in pairs) else sys.stdout

    def report(job: _Job, result: object, error: str | None) -> None:
        nonlocal failures
        for note in job.notes:
            _err(job.name, note)
        if error is None:
            results.append(result)  # type: ignore[arg-type]
            if common.as_json:
                click.echo(json.dumps(result), file=json_stream)
        else:
            failures += 1
            _err(job.name, error)
            if common.as_json:
                click.echo(json.dumps({"input": job.name, "error": error}), file=json_stream)

    def interrupted() -> SystemExit:
        _err(verb, f"interrupted after {len(results)} of {len(pairs)} files"
             + (f" ({failures} failed)" if failures else ""))
        return SystemExit(130)

    def name_of(src: str) -> str:
        return "<stdin>" if src == STDIO else src

    jobs = max(1, min(common.jobs, len(pairs)))
    if jobs == 1:
        current = None
        try:
            with _progress(pairs, label, common.quiet) as bar:
                for src, dest in bar:
                    current = dest
                    job = _Job(name_of(src))
                    result, error = _run_one(work, src, dest, job)
                    current = None
                    report(job, result, error)
        except KeyboardInterrupt:
            if current is not None:
                _remove_temp_files(current)
            raise interrupted() from None
    else:
        import torch

        # Split the CPU threads between the workers; torch applies this to every thread.
        saved_threads = torch.get_num_threads()
        per_worker = max(1, (common.threads or saved_threads) // jobs)
        torch.set_num_threads(per_worker)
        stop = threading.Event()
        claimed: set[int] = set()
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="udic-job")
        items: list[tuple[_Job, Future]] = []
        last_for_dest: dict[str, Future] = {}
        reported = 0  # items whose outcome has been printed
        # SIGINT only sets a flag while workers run: a KeyboardInterrupt raised inside
        # Future.result() can leave the future's lock held, and the worker that then
        # finishes that item waits for it forever.  The wait below polls the flag and
        # raises at a point where no lock is held.
        sigint = _SigintFlag(stop)
        try:
            for src, dest in pairs:
                job = _Job(name_of(src), parallel=True, stop=stop, claimed=claimed)
                key = os.path.abspath(dest)
                future = pool.submit(_run_one, work, src, dest, job, last_for_dest.get(key))
                last_for_dest[key] = future
                items.append((job, future))
            with _progress(items, label, common.quiet) as bar:
                for job, future in bar:
                    result, error = sigint.wait(future)
                    reported += 1
                    report(job, result, error)
        except KeyboardInterrupt:
            stop.set()
            for _, future in items:
                future.cancel()
            try:  # running items finish (complete file) or stop before writing anything
                pool.shutdown(wait=True)
            except KeyboardInterrupt:
                pass  # the interpreter still joins the workers on exit
            for job, future in items[reported:]:
                if future.done() and not future.cancelled():
                    result, error = future.result()
                    if result is not _CANCELLED:
                        report(job, result, error)
            raise interrupted() from None
        finally:
            pool.shutdown(wait=True)
            sigint.restore()
            torch.set_num_threads(saved_threads)
    if len(pairs) > 1 and not common.quiet:
        click.echo(f"udic: {len(pairs) - failures} of {len(pairs)} files {verb}d"
                   + (f", {failures} failed" if failures else ""), err=True)
    if failures:
        raise SystemExit(1)


def _check_dest(dest: str, force: bool) -> None:
    if dest != STDIO and os.path.lexists(dest) and not force:
        raise OutputError(f"{dest} exists (use --force to overwrite)")


def _set_precision(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from . import api

    api.PRECISION = value
    return value


def common_options(f: Callable) -> Callable:
    f = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON results.")(f)
    f = click.option("--quiet", is_flag=True, help="No progress bars or notices.")(f)
    f = click.option("--force", "-f", is_flag=True, help="Overwrite existing outputs.")(f)
    f = click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch.")(f)
    f = click.option(
        "--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True, expose_value=False,
        callback=_set_precision, help="Float transforms in bf16: ~3x faster on CPUs with bf16 units, ~0.05 dB lower PSNR.",
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
@click.option("-o", "--output", default=None, help="Output file, '-' for stdout, or a directory for several inputs.")
@click.option("-q", "--quality", type=float, default=None,
              help="Rate index, 0 (smallest) … 5 (best); fractions interpolate. Default 3.")
@click.option("--target-bpp", type=float, default=None,
              help="Search the quality that gives this many bits per pixel (within 3 %%).")
@click.option("--target-psnr", type=float, default=None,
              help="Search the quality that gives this PSNR in dB (within 0.1 dB).")
@click.option("--model", default=None, help="Model id, name or .safetensors path (default: packaged).")
@click.option("--effort", type=click.IntRange(0, MAX_EFFORT), default=DEFAULT_EFFORT, show_default=True,
              help="Per-image adaptation (never worse than 0): "
              + "; ".join(f"{e} = {describe_effort(e)}" for e in range(MAX_EFFORT + 1)) + ".")
@click.option("--time-budget", type=click.FloatRange(min=0), default=None,
              help="Seconds of adaptation per image (stops early, still writes a valid file).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for adaptation (deterministic encodes).")
@click.option("--allow-large", is_flag=True, help="Accept images over the 64-megapixel limit.")
@click.option("--tile", type=click.IntRange(min=0), default=None,
              help="Code in tiles of this many pixels (multiple of 64; 0 = never). Default: 1024 for images over 4 MP.")
@click.option("--strip", is_flag=True,
              help="Leave out EXIF and XMP metadata (camera, date, GPS, edits); the ICC profile is kept.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Files processed in parallel (each worker has its own model copy; CPU threads are split).")
@common_options
def encode(inputs: tuple[str, ...], output: str | None, quality: float | None, target_bpp: float | None,
           target_psnr: float | None, model: str | None, effort: int, time_budget: float | None, seed: int, allow_large: bool, tile: int | None, strip: bool, jobs: int,
           device: str, threads: int | None, force: bool, quiet: bool, as_json: bool) -> None:
    """Compress images to .udic files."""
    from . import api
    from .imageio import atomic_write_bytes, load_image

    common = Common(device, threads, force, quiet, as_json, jobs)
    q = api.DEFAULT_QUALITY if quality is None else quality
    try:
        _setup_threads(threads)
        pairs = _plan_outputs(inputs, output, ".udic")
        codec = api.get_codec(model, device, progress=not quiet)
        if not 0 <= q <= codec.max_quality:
            raise UsageError(f"-q {q:g} is out of range 0…{codec.max_quality:g}")
        if tile is not None:
            from .codec import choose_tile

            choose_tile(1, 1, tile)  # validates the size
        target = None
        if target_bpp is not None and target_psnr is not None:
            raise UsageError("use --target-bpp or --target-psnr, not both")
        if (target_bpp is not None or target_psnr is not None) and quality is not None:
            raise UsageError("-q and a --target-… option cannot be combined")
        if target_bpp is not None or target_psnr is not None:
            from .ratecontrol import RateTarget

            target = RateTarget("bpp", target_bpp) if target_bpp is not None else RateTarget("psnr", target_psnr)
    except UdicError as exc:
        _err("encode", str(exc))
        raise SystemExit(exc.exit_code) from None

    def work(src: str, dest: str, job: _Job) -> dict:
        t0 = time.perf_counter()
        _check_dest(dest, force)
        raw = _read_input(src)
        with job.pillow():
            image = load_image(raw, allow_large=allow_large)
        if strip:
            image = dataclasses.replace(image, metadata=Metadata())
        if not quiet:
            for notice in image.notices:
                job.say(f"note: {notice}")
        label = "<stdin>" if src == STDIO else Path(src).name
        if job.parallel:  # no live display from workers; stop early when interrupted
            on_step = job.check
        else:
            on_step = None if quiet else _StepProgress(label)
        try:
            result = _encode_loaded(image, q, model, device, effort, time_budget, seed, on_step, job, tile, target)
        finally:
            if isinstance(on_step, _StepProgress):
                on_step.close()
        if not quiet:
            for notice in result.notices[len(image.notices):]:  # e.g. an unreachable rate target
                job.say(f"note: {notice}")
        atomic_write_bytes(dest, result.data, force=force)  # "-" is stdout
        return {
            "input": src, "output": dest, "bytes": len(result.data), "bpp": round(result.bpp, 5),
            "width": result.header.width, "height": result.header.height, "quality": result.header.quality,
            "model_id": result.header.model_id, "effort": effort, "tile": result.header.tile_pixels,
            "seconds": round(time.perf_counter() - t0, 3),
            "adapters": bool(result.header.flags & Flags.ADAPTERS),
            "metadata": bool(result.header.flags & Flags.METADATA), "notices": result.notices,
        }

    _run_batch(pairs, common, "encode", work)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Output image (format from suffix), '-' for stdout (PNG), or a directory.")
@click.option("--format", "fmt", default=None, help="Output format when it cannot come from a suffix (default PNG).")
@click.option("--model", default=None, help="Weights to decode with (default: found by the model id in the file).")
@click.option("--allow-large", is_flag=True, help="Accept files over the 64-megapixel limit.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Files processed in parallel (each worker has its own model copy; CPU threads are split).")
@common_options
def decode(inputs: tuple[str, ...], output: str | None, fmt: str | None, model: str | None, allow_large: bool,
           jobs: int, device: str, threads: int | None, force: bool, quiet: bool, as_json: bool) -> None:
    """Decompress .udic files to images."""
    from .imageio import save_image

    common = Common(device, threads, force, quiet, as_json, jobs)
    suffix = "." + (fmt or "png").lower()
    try:
        _setup_threads(threads)
        pairs = _plan_outputs(inputs, output, suffix)
    except UdicError as exc:
        _err("decode", str(exc))
        raise SystemExit(exc.exit_code) from None

    def work(src: str, dest: str, job: _Job) -> dict:
        _check_dest(dest, force)
        data = _read_input(src)
        on_tile = None if quiet or job.parallel else _StepProgress("<stdin>" if src == STDIO else Path(src).name)
        try:
            result = _decode_bytes(data, device, allow_large, not quiet, model, job,
                                   None if on_tile is None else (lambda d, t: on_tile("tiles", d, t, math.nan)))
        finally:
            if on_tile is not None:
                on_tile.close()
        if dest == STDIO:
            save_image(result.image, STDIO, format=fmt or "PNG")
        else:
            save_image(result.image, dest, force=force, format=fmt)
        h = result.header
        return {"input": src, "output": dest, "width": h.width, "height": h.height,
                "quality": h.quality, "model_id": h.model_id, "seconds": round(result.seconds, 3)}

    _run_batch(pairs, common, "decode", work)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(inputs: tuple[str, ...], as_json: bool) -> None:
    """Describe .udic files without decoding them."""
    from . import api

    failures = 0
    for src in inputs:
        name = "<stdin>" if src == STDIO else src
        try:
            fi = api.info(_read_input(src))
        except UdicError as exc:
            failures += 1
            _err(name, str(exc))
            continue
        if as_json:
            click.echo(json.dumps({"input": src, **fi.to_dict()}))
            continue
        flags = [n for n, on in (("adapters", fi.adapters), ("loop filter", fi.loop_filter), ("alpha", fi.alpha),
                                 ("icc", fi.icc), (f"exif {fi.exif_bytes} B", fi.exif_bytes),
                                 (f"xmp {fi.xmp_bytes} B", fi.xmp_bytes)) if on]
        click.echo(f"{name}:")
        click.echo(f"  size        {fi.width}x{fi.height} {fi.colour}")
        click.echo(f"  bytes       {fi.bytes} ({fi.bpp:.4f} bpp)")
        click.echo(f"  model       {fi.model_id}")
        click.echo(f"  quality     {fi.quality:g}")
        click.echo(f"  features    {', '.join(flags) if flags else 'none'}")
        click.echo(f"  adaptation  effort {fi.effort}"
                   + (f", adapters {fi.adapter_bytes} B" if fi.adapters else ", no adapters")
                   + (f", loop filter {fi.loop_filter_bytes} B" if fi.loop_filter else ", no loop filter"))
        click.echo(f"  tiles       {f'{fi.tile}x{fi.tile} px' if fi.tile else 'none (one piece)'}")
        click.echo("  sections    " + ", ".join(f"{k} {v} B" for k, v in fi.sections.items()))
        click.echo(f"  overhead    {fi.overhead_bytes} B (header {fi.header_bytes} B)")
        click.echo(f"  latent crc  {fi.latent_crc}")
        click.echo(f"  version     {fi.version}")
    if failures:
        raise SystemExit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(as_json: bool) -> None:
    """List known models and where each is available."""
    from . import hub

    try:
        default, _ = hub.load_registry()
        rows = hub.list_models()
    except UdicError as exc:
        _err("models", str(exc))
        raise SystemExit(1) from None
    if as_json:
        click.echo(json.dumps([
            {"id": e.id, "name": e.name, "size": e.size, "status": status, "default": e.id == default,
             "description": e.description} for e, status in rows
        ]))
        return
    if not rows:
        click.echo("no models registered")
        return
    for e, status in rows:
        mark = "*" if e.id == default else " "
        click.echo(f"{mark} {e.id}  {e.name:<24} {e.size / 1e6:6.1f} MB  {status:<12} {e.description}")


def _unexpected(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"unexpected error ({type(exc).__name__}): {text[:300]}"


def run() -> None:
    """Console entry point: no traceback ever reaches the user."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        click.echo("udic: interrupted", err=True)
        raise SystemExit(130) from None
    except click.ClickException as exc:
        # One line, like every other udic error (click would print the usage block).
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "udic"
        hint = f" (see '{where} --help')" if ctx is not None else ""
        message = " ".join(exc.format_message().split())
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
        click.echo(f"udic: {_unexpected(exc)}", err=True)
        raise SystemExit(3) from None


def _register_compare() -> None:
    from .compare import compare_command

    main.add_command(compare_command)


_register_compare()


if __name__ == "__main__":  # pragma: no cover
    run()
