"""Encoder: candidate payloads worked out in a forked child process, on a core that would idle.

A lossless encode tries several forms of one image (the interlaced palette, the palette raster
scan with long matches, prediction) and keeps the smallest.  Each is single-threaded Python and
numpy, and they are independent until the encoder compares their sizes, so on a machine with a
second core one of them can run there while the encoder works out another.

The payload is the serial encoder's, byte for byte, whatever the number of workers: a job's value
is a pure function of its arguments (no job reads another candidate's size); the encoder takes it
at the point where the serial encoder would have computed it, and makes every decision that
depends on earlier candidates (estimate skips, which forms to try) there itself.  A job that turns
out not to be wanted is killed.  Without a spare core (``workers`` 1, one CPU in the process's
affinity, another Python thread alive, a platform without ``fork``), or when a child fails, a job
is computed inline when first asked for: exactly the serial encoder's work, no more.

Forking only from a process with no other Python thread keeps the child from inheriting a lock
held elsewhere; the child runs numpy and constriction only, and ends with ``os._exit`` (no
buffered output of the parent is flushed twice, no exit handlers run).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

MIN_PIXELS = 1 << 15  # smaller images encode in a few hundredths of a second: no fork pays there
MAX_PIXELS = 1 << 23  # larger ones encode serially: each child's working arrays (and the pages of the
# parent's Python lists whose reference counts it touches) add to the peak memory (a 5.2 MP tile sheet:
# 1.2 GB serial; 3.5 GB summed over the processes with a speculative prediction, 2.0 GB without)
SPECULATE_PIXELS = 1 << 21  # a job that may not be wanted (``speculative``) only up to this size

_configured: int | None = None  # set_workers(); None: the CPUs this process may run on
_may_fork = True  # False in a child whose job was not submitted ``nested``


def set_workers(count: int | None) -> None:
    """How many processes one encode may keep busy, itself included (None: one per CPU the
    process may run on; 1: never fork).  The CLI sets it from ``--threads``; a parallel batch
    runs its files on threads, which never fork."""
    global _configured
    if count is not None and count < 1:
        raise ValueError(f"workers must be ≥ 1, got {count}")
    _configured = count


def cpus() -> int:
    """The CPUs this process may run on (its affinity: ``taskset`` narrows it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return 1


def workers() -> int:
    """Processes one encode may keep busy, itself included."""
    return _configured if _configured is not None else cpus()


def _can_fork() -> bool:
    return (sys.platform.startswith("linux") and hasattr(os, "fork")
            and threading.current_thread() is threading.main_thread() and threading.active_count() == 1)


_to_parent: int | None = None  # in a child: the write end of its pipe to the process that forked it


def _die_with(parent: int) -> None:
    """In a child: be killed when the encoder's process ends, however it ends (PR_SET_PDEATHSIG),
    rather than compute on for nothing; leave at once if it has ended already."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


class Job:
    """One candidate's value: computed by a forked child from the moment it is made (when a core
    is spare), else inline when ``result`` is first called."""

    def __init__(self, pool: Pool, fn: Callable[..., Any], args: tuple, kwargs: dict, fork: bool,
                 nested: bool = False, speculative: bool = False) -> None:
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._pid: int | None = None
        self._read: int | None = None
        self._done = self._cancelled = False
        self._value: Any = None
        self._pool = pool
        if fork:
            self._start(nested, speculative)

    @property
    def forked(self) -> bool:
        return self._pid is not None

    def _start(self, nested: bool, speculative: bool) -> None:
        read, write = os.pipe()
        parent = os.getpid()
        # SIGINT waits until the child is on the books (the parent's) or has its own handler (the
        # child's): an interruption in between would leave a child no one reaps, or unwind the
        # parent's stack in the child.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            try:
                with warnings.catch_warnings():
                    # Python ≥ 3.12 warns when the process has other OS threads: torch's, whose code
                    # the child never runs, and OpenBLAS's, which it stops around a fork.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
            except OSError:  # no fork (out of processes or memory): computed inline
                os.close(read)
                os.close(write)
                return
            except BaseException:
                os.close(read)
                os.close(write)
                raise
            if pid == 0:
                self._run_child(read, write, parent, nested, speculative, mask)
            os.close(write)
            self._pid, self._read = pid, read
            self._pool._running.append(self)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _run_child(self, read: int, write: int, parent: int, nested: bool, speculative: bool, mask: set) -> None:
        """The child: compute, send, leave without running any of the parent's code on the way out."""
        global _may_fork, _to_parent
        code = 0
        try:
            os.close(read)
            if _to_parent is not None:  # a grandchild: its parent's pipe is not its own (EOF must not wait on it)
                os.close(_to_parent)
            _to_parent = write
            _may_fork = nested  # only a job submitted ``nested`` forks jobs of its own
            self._pool._running.clear()  # (the parent's children are not this one's)
            _die_with(parent)
            if speculative:  # it takes only what the jobs that are wanted leave of the CPUs
                os.nice(19)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # an interrupted encode ends its children quietly
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            try:
                data = pickle.dumps((True, self._fn(*self._args, **self._kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException:  # the parent recomputes inline and raises there, with its traceback
                data = pickle.dumps((False, None))
            view = memoryview(data)
            while view:
                view = view[os.write(write, view):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)

    def _collect(self) -> tuple[bool, Any]:
        chunks = []
        complete = False
        try:
            while chunk := os.read(self._read, 1 << 20):
                chunks.append(chunk)
            complete = True
        finally:
            self._reap(kill=not complete)  # (interrupted: the child is not waited for)
        try:
            return pickle.loads(b"".join(chunks))
        except Exception:  # the child died before it had sent its value (killed, out of memory)
            return False, None

    def _reap(self, kill: bool) -> None:
        """Kill (if asked) and wait for the child, once, whatever interrupts it."""
        pid, read = self._pid, self._read
        if pid is None:
            return
        self._pid = self._read = None
        self._pool._running.remove(self)
        try:
            if kill:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            os.close(read)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass

    def result(self, **inline: Any) -> Any:
        """The job's value.  ``inline``: keyword arguments that replace the job's own for an
        inline computation only (what the caller has already worked out or settled, which a
        child works out for itself)."""
        if self._cancelled:
            raise RuntimeError("the job was cancelled")
        if not self._done:
            ok, value = self._collect() if self._pid is not None else (False, None)
            self._value = value if ok else self._fn(*self._args, **{**self._kwargs, **inline})
            self._done = True
        return self._value

    def cancel(self) -> None:
        """Not wanted after all: a running child is killed."""
        self._reap(kill=True)
        self._done = self._cancelled = True


class Pool:
    """The jobs of one encode.  As a context manager it kills whatever is still running when the
    encode ends (a value not taken, an exception, an interruption)."""

    def __init__(self, pixels: int) -> None:
        self._running: list[Job] = []
        self._pixels = pixels
        self._enabled = MIN_PIXELS <= pixels <= MAX_PIXELS and workers() > 1 and _can_fork()

    def submit(self, fn: Callable[..., Any], *args: Any, caller_waits: bool = False, nested: bool = False,
               speculative: bool = False, **kwargs: Any) -> Job:
        """A job computing ``fn(*args, **kwargs)``: forked if a core is spare, counting the caller's own
        unless ``caller_waits`` (it will block on a result next, so its core is free).  ``nested``:
        the job may fork jobs of its own (one that does most of the work and has parts that can run
        apart).  ``speculative``: it may not be wanted, so it runs at the lowest priority (a 5.2 MP
        tile sheet's prediction trial, forked beside the raster scan and its parse, took 10 s of
        their CPU and the encode went from 13.6 to 15.2 s) and only on images up to
        SPECULATE_PIXELS (its memory comes on top of theirs)."""
        busy = len(self._running) + (0 if caller_waits else 1)
        fork = self._enabled and _may_fork and busy < workers()
        if speculative and self._pixels > SPECULATE_PIXELS:
            fork = False
        return Job(self, fn, args, kwargs, fork, nested, speculative)

    def map(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """``[fn(item) for item in items]``: the first item worked out by the caller, the others
        forked where cores are spare (the rest inline, before the caller waits on a child)."""
        others = [self.submit(fn, item) for item in items[1:]]
        first = fn(items[0])
        for job in others:
            if not job.forked:
                job.result()
        return [first] + [job.result() for job in others]

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *_: object) -> None:
        for job in list(self._running):
            job.cancel()

