"""The lossless encoder's forked workers: the payload never depends on them, and a child that
fails, is not wanted or cannot be forked costs nothing but time."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from udic import lossless
from udic.lossless import longcopy, predict, transforms, workers


@pytest.fixture(autouse=True)
def _reset_workers():
    yield
    workers.set_workers(None)


def _forks(monkeypatch) -> list[bool]:
    """Children started by the encoder in this process, recorded: whether each was speculative."""
    started: list[bool] = []
    original = workers.Job._start

    def start(self, nested, speculative):
        original(self, nested, speculative)
        if self.forked:
            started.append(speculative)

    monkeypatch.setattr(workers.Job, "_start", start)
    return started


def _tile_art(h: int, w: int, colours: int, seed: int, tiles: int = 40) -> np.ndarray:
    """16×16 tiles of 2×2 blocks drawn from ``colours`` colours, a few tiles repeated over the
    image: a palette image with long matches (and, with more than one colour per 16 pixels, a prediction trial)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (colours, 3), dtype=np.uint8)
    shapes = rng.integers(0, colours, (tiles, 8, 8))
    pick = rng.integers(0, tiles, (h // 16 + 1, w // 16 + 1))
    blocks = np.block([[shapes[pick[i, j]] for j in range(pick.shape[1])] for i in range(pick.shape[0])])
    index = np.kron(blocks, np.ones((2, 2), dtype=np.int64))[:h, :w]
    return palette[index]


def _images() -> dict[str, np.ndarray]:
    gray = _tile_art(256, 288, 200, 3)[:, :, :1].copy()
    many = _tile_art(256, 320, 12000, 4, tiles=160)  # over MAX_PALETTE: prediction, then the big raster scan
    # Palette: more than one colour per 16 pixels, so prediction is wanted and begins beside the raster scan.
    return {"palette": _tile_art(192, 192, 4000, 2, tiles=100), "gray": gray, "many colours": many}


def test_the_payload_does_not_depend_on_the_workers(monkeypatch):
    """Serial and with a second process (the raster scan, both halves of its parse, the literal
    estimates and a speculative prediction run in children): the same bytes, decoded exactly."""
    assert workers._can_fork(), "the test process must be able to fork (one Python thread, Linux)"
    images = _images()
    assert transforms.find_palette(images["many colours"], lossless.MAX_PALETTE) is None
    colours = transforms.find_palette(images["palette"], lossless.MAX_PALETTE)[0].shape[0]
    assert colours * lossless.PREDICT_DENSITY > images["palette"].shape[0] * images["palette"].shape[1]
    for name, pixels in images.items():
        workers.set_workers(1)
        started = _forks(monkeypatch)
        serial = lossless.encode(pixels, 8, 0, 1)
        assert not started, name
        workers.set_workers(2)
        parallel = lossless.encode(pixels, 8, 0, 1)
        assert started, f"{name}: nothing ran in a child"
        assert any(started) == (name == "palette"), f"{name}: speculative children {started}"
        assert parallel == serial, name
        assert np.array_equal(lossless.decode(parallel), pixels), name
        near = lossless.encode(pixels, 8, 4, 1)
        workers.set_workers(1)
        assert lossless.encode(pixels, 8, 4, 1) == near, f"{name} at ±4"


def test_small_images_and_one_worker_never_fork(monkeypatch):
    started = _forks(monkeypatch)
    workers.set_workers(2)
    small = _tile_art(64, 64, 300, 5)
    assert small.shape[0] * small.shape[1] < workers.MIN_PIXELS
    lossless.encode(small, 8, 0, 1)
    workers.set_workers(1)
    lossless.encode(_tile_art(256, 288, 1500, 2), 8, 0, 1)
    assert not started


def test_a_thread_other_than_the_main_one_never_forks():
    """Batch encodes run on threads, where a fork could copy a lock another thread holds."""
    workers.set_workers(2)
    seen = []

    def work():
        pool = workers.Pool(1 << 20)
        seen.append(pool.submit(os.getpid).forked)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [False]


def _value_in_child_only(parent: int, value: int) -> int:
    if os.getpid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)  # dies before it sends anything
    return value


def test_a_child_that_dies_is_recomputed_inline():
    workers.set_workers(2)
    with workers.Pool(1 << 20) as pool:
        job = pool.submit(_value_in_child_only, os.getpid(), 42)
        assert job.forked
        assert job.result() == 42


def _fails(value: int) -> int:
    raise ValueError(f"bad value {value}")


def test_a_child_that_raises_raises_again_in_the_caller():
    """The child's exception is not pickled across: the caller recomputes and raises it, with its
    own traceback."""
    workers.set_workers(2)
    with workers.Pool(1 << 20) as pool:
        job = pool.submit(_fails, 7)
        assert job.forked
        with pytest.raises(ValueError, match="bad value 7"):
            job.result()


def _gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # reaped already
    return False


def test_jobs_not_wanted_are_killed_and_reaped():
    workers.set_workers(2)
    started = time.perf_counter()
    with workers.Pool(1 << 20) as pool:
        cancelled = pool.submit(time.sleep, 60)
        assert cancelled.forked
        pid = cancelled._pid
        cancelled.cancel()
        assert _gone(pid)
        left = pool.submit(time.sleep, 60, caller_waits=True)
        assert left.forked
        pid = left._pid
    assert _gone(pid)  # the pool's end killed what was still running
    assert time.perf_counter() - started < 10


def test_inline_arguments_replace_the_jobs_own_only_inline():
    """``result(**inline)``: what the caller has worked out, used when the value is computed in
    the caller; a child computed it from the job's own arguments."""
    workers.set_workers(1)
    job = workers.Pool(1 << 20).submit(lambda a, b=1: (a, b), 5, b=2)
    assert not job.forked and job.result(b=3) == (5, 3)
    workers.set_workers(2)
    job = workers.Pool(1 << 20).submit(lambda a, b=1: (a, b), 5, b=2)
    assert job.forked and job.result(b=3) == (5, 2)


def test_the_parse_halves_stitch_into_valid_matches():
    """From SPLIT_PIXELS on, the long-match parse runs in two halves: every match still copies
    equal pixels from earlier ones, and matches never overlap."""
    index = np.kron(np.random.default_rng(9).integers(0, 40, (32, 36)), np.ones((8, 8), dtype=np.int64))
    assert index.size >= longcopy.SPLIT_PIXELS
    costs = np.full(index.size, 3.0)
    halves = longcopy.find_long_matches(index, costs, split=True)
    whole = longcopy.find_long_matches(index, costs, split=False)
    assert len(halves) and len(whole)
    flat = index.ravel()
    end = 0
    for p, length, d in zip(halves.starts.tolist(), halves.lengths.tolist(), halves.dists.tolist()):
        assert p >= end and length >= longcopy.MIN_LONG and 0 < d <= p
        assert all(flat[q] == flat[q - d] for q in range(p, p + length))
        end = p + length


def test_stitching_cuts_a_match_that_starts_inside_the_previous_one():
    parts = [([0, 100], [50, 40], [10, 20]), ([120, 135, 200], [30, 20, 12], [7, 8, 9])]
    starts, lengths, dists = longcopy._stitch(parts)
    # 120 starts inside 100 … 140: cut to 140 … 150; 135 … 155 then starts inside that: cut to
    # 150 … 155, under MIN_LONG, dropped.
    assert starts == [0, 100, 140, 200]
    assert lengths == [50, 40, 10, 12]
    assert dists == [10, 20, 7, 9]


def test_the_least_squares_solve():
    assert predict._solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]) == pytest.approx([0.8, 1.4])
    assert predict._solve([[0.0, 1.0], [1.0, 0.0]], [2.0, 3.0]) == [3.0, 2.0]  # pivoting
    assert predict._solve([[1.0, 2.0], [2.0, 4.0]], [1.0, 2.0]) is None
    rng = np.random.default_rng(2)
    a = rng.normal(size=(9, 9)) + 9 * np.eye(9)
    b = rng.normal(size=9)
    assert np.allclose(predict._solve(a.tolist(), b.tolist()), np.linalg.solve(a, b))


@pytest.mark.parametrize("likely", [transforms.SUBTRACT_GREEN, transforms.YCOCG_R, transforms.GREEN_FIRST])
def test_the_likely_transforms_encode_beside_the_crop_trial_is_kept_only_if_chosen(monkeypatch, likely):
    """A photo's transform is picked by coding a crop with each; the likeliest one's full encode
    runs meanwhile in a child and is used if the trial picks it, else killed: the same payload."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:340, 0:344].astype(np.float64)
    photo = np.stack([np.sin(xx / 9 + k) * np.cos(yy / (7 + k)) * 90 + 128 + rng.normal(0, 3, xx.shape)
                      for k in range(3)], axis=2).clip(0, 255).astype(np.uint8)
    assert lossless._crop_trial(photo, 0, 1)
    workers.set_workers(1)
    serial = lossless.encode(photo, 8, 0, 1)
    chosen = lossless._transform_candidates(photo, 8, 0, 1)
    monkeypatch.setattr(lossless, "LIKELY_TRANSFORM", likely)
    cancelled = []
    original = workers.Job.cancel

    def cancel(self):
        cancelled.append(self.forked)
        original(self)

    monkeypatch.setattr(workers.Job, "cancel", cancel)
    workers.set_workers(2)
    assert lossless.encode(photo, 8, 0, 1) == serial
    assert cancelled == ([] if chosen == [likely] else [True])


def test_children_do_not_outlive_the_encoder():
    """An encoder killed outright (no chance to clean up) takes its children with it."""
    import subprocess
    import sys

    code = ("import os, sys, time\n"
            "from udic.lossless import workers\n"
            "workers.set_workers(2)\n"
            "job = workers.Pool(1 << 20).submit(time.sleep, 60)\n"
            "print(job._pid, flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(100):
        try:
            with open(f"/proc/{child}/stat") as f:
                state = f.read().split(")")[-1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":  # dead, waiting for init to reap it
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"child {child} still runs after its encoder was killed")


def test_a_cancelled_job_has_no_value():
    workers.set_workers(2)
    job = workers.Pool(1 << 20).submit(time.sleep, 60)
    job.cancel()
    with pytest.raises(RuntimeError, match="cancelled"):
        job.result()


def test_a_failed_fork_computes_inline(monkeypatch):
    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    workers.set_workers(2)
    before = len(os.listdir("/proc/self/fd"))
    job = workers.Pool(1 << 20).submit(sum, [1, 2, 3])
    assert not job.forked and job.result() == 6
    assert len(os.listdir("/proc/self/fd")) == before  # the pipe was closed


def test_a_speculative_job_runs_at_the_lowest_priority_and_only_on_small_images():
    workers.set_workers(2)
    with workers.Pool(1 << 20) as pool:
        job = pool.submit(os.nice, 0, speculative=True, caller_waits=True)
        assert job.forked and job.result() == 19
        assert pool.submit(os.nice, 0, caller_waits=True).result() == os.nice(0)
    big = workers.SPECULATE_PIXELS + 1
    with workers.Pool(big) as pool:
        assert not pool.submit(os.nice, 0, speculative=True, caller_waits=True).forked
        assert pool.submit(os.nice, 0, caller_waits=True).forked
