"""The batch engine behind ``udic encode`` and ``udic decode`` with several files.

A batch runs ``work(src, dest, job)`` per (input, output) pair, one after another or,
with ``jobs > 1``, on worker threads (torch releases the GIL in its kernels).  Either
way the reports (notes, error lines, JSON records) come out in input order, one bad
file never stops the others, a summary line closes the run, the exit code is 1 if any
file failed, and an interruption (SIGINT) leaves only complete outputs behind and
exits 130.

It knows nothing of click or of codecs: the CLI hands it the work, and each job gets
its own ``api.CodecCache`` (per worker thread when parallel), so a codec is never
shared between threads.  Progress is drawn only on a terminal.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Protocol

from .checks import STDIO, display_name
from .errors import UdicError


def say(name: str, message: str) -> None:
    """One ``udic: NAME: message`` line on stderr: the shape of every udic report."""
    print(f"udic: {name}: {message}", file=sys.stderr, flush=True)


def unexpected(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"unexpected error ({type(exc).__name__}): {text[:300]}"


class Record(Protocol):
    def to_json(self) -> dict: ...


class Cancelled(BaseException):
    """Raised inside a worker once the batch is interrupted; never escapes ``run_batch``."""


_CANCELLED = object()  # outcome of an item that never ran (or stopped) because of an interruption


@dataclass
class Job:
    """What one item's ``work`` may use besides its paths.

    ``say(message)`` reports a one-line note about the item: printed at once in a
    serial batch, and in input order with the item's outcome in a parallel one.
    ``parallel`` means work runs on a worker thread: it shows no live progress and
    wraps image loading in ``pillow()``.  ``codecs`` is this thread's codec cache.
    ``check()`` raises once the batch is interrupted.
    """

    name: str
    codecs: Any = None  # api.CodecCache (imported lazily: the batch itself needs no torch)
    parallel: bool = False
    stop: threading.Event | None = None
    notes: list[str] = field(default_factory=list)
    # The item's paths as the user gave them ("-" for stdin/stdout), for --json error records.
    source: str = ""
    output: str = ""

    def say(self, message: str) -> None:
        if self.parallel:
            self.notes.append(message)
        else:
            say(self.name, message)

    def check(self, *_: object) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Cancelled

    @contextmanager
    def pillow(self) -> Iterator[None]:
        """``load_image`` toggles Pillow's global bomb limit: one worker at a time."""
        if not self.parallel:
            yield
            return
        with _PILLOW_LOCK:
            yield


_PILLOW_LOCK = threading.Lock()


class ProgressBar:
    """``label [####----] 3/10`` rewritten in place on a terminal; nothing at all otherwise."""

    def __init__(self, label: str, total: int, stream=None) -> None:  # noqa: ANN001 - a text stream
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        try:
            self.enabled = self.stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False
        self.done = 0

    def advance(self, step: int = 1) -> None:
        self.done += step
        if self.enabled:
            width = 24
            filled = width * self.done // max(self.total, 1)
            self.stream.write(f"\r{self.label}  [{'#' * filled}{'-' * (width - filled)}]  {self.done}/{self.total}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\r\x1b[K")  # leave the line clean for the reports that follow
            self.stream.flush()


def _run_one(work: Callable[[str, str, Job], Record], src: str, dest: str, job: Job,
             after: Future | None = None) -> tuple[object, str | None]:
    """(record, None) or (None, one-line error) or (_CANCELLED, None); never raises in a worker."""
    try:
        if after is not None:  # an earlier item writes the same output: let it go first
            try:
                after.result()
            except CancelledError:
                return _CANCELLED, None
        job.check()
        return work(src, dest, job), None
    except Cancelled:
        return _CANCELLED, None
    except UdicError as exc:  # one bad file never stops the batch
        return None, str(exc)
    except Exception as exc:
        return None, unexpected(exc)


class _SigintFlag:
    """While installed, SIGINT sets ``stop`` instead of raising; ``wait`` raises it safely."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.hit = False
        # Called on a second SIGINT, once the batch is already stopping (running items finish
        # or stop at their next check; a user who presses Ctrl-C again wants out now).
        self.on_second: Callable[[], None] | None = None
        self._old = None
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (an embedding app): keep its handling
            self._old = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.hit and self.on_second is not None:
            self.on_second()
            return
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


def remove_temp_files(dest: str) -> None:
    """Belt and braces after an interruption: drop any temp file of an output being written.

    ``imageio.atomic_write_bytes`` removes its own temp file on every exception; this only
    matters if the signal landed between the temp file's creation and that bookkeeping.
    The pattern is the one ``atomic_write_bytes`` uses: ``.<name>.<random>.udic-tmp``.
    """
    if dest == STDIO:
        return
    from .imageio import temp_prefix  # (Pillow and numpy load with it: not at import)

    path = Path(dest)
    try:
        for tmp in path.parent.glob(f"{glob_escape(temp_prefix(path))}*.udic-tmp"):
            with suppress(OSError):
                tmp.unlink()
    except OSError:
        pass


@dataclass
class BatchOptions:
    verb: str  # "encode" or "decode": the summary says "3 of 3 files encoded"
    jobs: int = 1
    threads: int | None = None
    quiet: bool = False
    as_json: bool = False
    on_done: Callable[[Job, Record], None] | None = None  # e.g. the terminal summary of one file
    # False when no file can need a network (a --lossless encode): torch, whose threads a
    # parallel batch splits between its workers, is then not imported (~2.5 s of start-up).
    uses_models: bool = True


def run_batch(pairs: list[tuple[str, str]], options: BatchOptions, work: Callable[[str, str, Job], Record]) -> None:
    """Run ``work`` per (input, output) pair; keep going after failures; summarise; exit 1 on any failure."""
    from . import api

    failures = 0
    records: list[Record] = []
    json_stream = sys.stderr if any(o == STDIO for _, o in pairs) else sys.stdout

    def report(job: Job, record: object, error: str | None) -> None:
        nonlocal failures
        for note in job.notes:
            say(job.name, note)
        if error is None:
            records.append(record)  # type: ignore[arg-type]
            if options.as_json:
                print(json.dumps(record.to_json()), file=json_stream, flush=True)  # type: ignore[union-attr]
            elif options.on_done is not None:
                options.on_done(job, record)  # type: ignore[arg-type]
        else:
            failures += 1
            say(job.name, error)
            if options.as_json:
                # (the same keys as a success record's: "-" for stdin, and where it was to go)
                print(json.dumps({"input": job.source or job.name, "output": job.output or None, "error": error}),
                      file=json_stream, flush=True)

    def interrupted() -> SystemExit:
        say(options.verb, f"interrupted after {len(records)} of {len(pairs)} files"
            + (f" ({failures} failed)" if failures else ""))
        return SystemExit(130)

    label = options.verb.removesuffix("e") + "ing"  # encoding, decoding
    bar = ProgressBar(label, len(pairs)) if not options.quiet and len(pairs) > 1 else None
    jobs = max(1, min(options.jobs, len(pairs)))
    try:
        if jobs == 1:
            _serial(pairs, work, report, bar, interrupted, api._cache)
        else:
            _parallel(pairs, work, report, bar, interrupted, jobs, options.threads, api._cache.worker_caches(),
                      options.uses_models)
    finally:
        if bar is not None:
            bar.close()
    if len(pairs) > 1 and not options.quiet:
        print(f"udic: {len(pairs) - failures} of {len(pairs)} files {options.verb}d"
              + (f", {failures} failed" if failures else ""), file=sys.stderr, flush=True)
    if failures:
        raise SystemExit(1)


def _serial(pairs: Iterable[tuple[str, str]], work, report, bar: ProgressBar | None, interrupted,  # noqa: ANN001
            cache: Any) -> None:
    current = None
    try:
        for src, dest in pairs:
            current = dest
            job = Job(display_name(src), codecs=cache, source=src, output=dest)
            record, error = _run_one(work, src, dest, job)
            current = None
            if bar is not None:
                bar.close()  # reports print on a clean line, the bar redraws after them
            report(job, record, error)
            if bar is not None:
                bar.advance()
    except KeyboardInterrupt:
        if current is not None:
            remove_temp_files(current)
        raise interrupted() from None


def _parallel(pairs: list[tuple[str, str]], work, report, bar: ProgressBar | None, interrupted,  # noqa: ANN001
              jobs: int, threads: int | None, worker_cache: Callable[[], Any], uses_models: bool = True) -> None:
    torch = None
    if uses_models:
        import torch

        # One CPU thread a worker.  torch's thread count is the process's, and the exact synthesis
        # drops it to one while any worker synthesises: a share of the threads would leave another
        # worker's analysis on 1 or N threads by timing, and a learned file's bytes depend on that
        # count.  With one thread each, a parallel batch writes the files `--threads 1` writes.
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(1)
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="udic-job")
    items: list[tuple[Job, Future]] = []
    last_for_dest: dict[str, Future] = {}
    reported = 0  # items whose outcome has been printed

    def in_worker(src: str, dest: str, job: Job, after: Future | None) -> tuple[object, str | None]:
        job.codecs = worker_cache()  # this thread's own codecs
        return _run_one(work, src, dest, job, after)

    # SIGINT only sets a flag while workers run: a KeyboardInterrupt raised inside
    # Future.result() can leave the future's lock held, and the worker that then
    # finishes that item waits for it forever.  The wait below polls the flag and
    # raises at a point where no lock is held.
    sigint = _SigintFlag(stop)
    try:
        for src, dest in pairs:
            job = Job(display_name(src), parallel=True, stop=stop, source=src, output=dest)
            key = os.path.abspath(dest)
            future = pool.submit(in_worker, src, dest, job, last_for_dest.get(key))
            last_for_dest[key] = future
            items.append((job, future))
        for job, future in items:
            record, error = sigint.wait(future)
            reported += 1
            if bar is not None:
                bar.close()
            report(job, record, error)
            if bar is not None:
                bar.advance()
    except KeyboardInterrupt:
        stop.set()
        for _, future in items:
            future.cancel()

        def abandon() -> None:
            """A second Ctrl-C: leave now.  Outputs are written by rename, so an abandoned item
            leaves no partial file, only its temp file, removed here."""
            for (src, dest), (_, future) in zip(pairs, items):
                if not future.done():
                    remove_temp_files(dest)
            print("udic: interrupted again: running items abandoned", file=sys.stderr, flush=True)
            exit_code = interrupted().code
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exit_code if isinstance(exit_code, int) else 130)

        sigint.hit = True
        sigint.on_second = abandon
        try:  # running items finish (complete file) or stop before writing anything
            pool.shutdown(wait=True)
        except KeyboardInterrupt:
            pass  # the interpreter still joins the workers on exit
        for job, future in items[reported:]:
            if future.done() and not future.cancelled():
                record, error = future.result()
                if record is not _CANCELLED:
                    report(job, record, error)
        raise interrupted() from None
    finally:
        pool.shutdown(wait=True)
        sigint.restore()
        if torch is not None:
            torch.set_num_threads(saved_threads)
