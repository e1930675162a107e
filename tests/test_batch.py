"""Batches: one bad file never stops the others, ``--jobs N`` gives the same files and the
same reports in the same order as a serial run, and SIGINT leaves only complete outputs."""

from __future__ import annotations


import io
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import UDIC, TinyModel, png_bytes, run, smooth_image
from udic import container as ctr
from udic.cli import main









def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if "tmp" in p.name or p.name.startswith("."))


def make_images(directory: Path, count: int, bad: set[int] = frozenset(), size: tuple[int, int] | None = None) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"img{i:03d}.png"
        if i in bad:
            path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        else:
            h, w = size or (8 + i % 7, 9 + i % 5)
            path.write_bytes(png_bytes(smooth_image(h, w, seed=i)))
        paths.append(path)
    return paths


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ---- one bad file in a hundred ----------------------------------------------------------------


def test_hundred_files_one_bad_serial_and_parallel(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "src", 100, bad={37})
    outs = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        result = run(runner, "encode", *map(str, inputs), "-o", str(out), "--model", tiny_cache.id,
                     "--effort", "0", "--json", "--jobs", str(jobs))
        assert result.exit_code == 1, result.stderr
        reports = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r.get("input") for r in reports] == [str(p) for p in inputs]  # input order
        assert [i for i, r in enumerate(reports) if "error" in r] == [37]
        lines = result.stderr.strip().splitlines()
        assert [line for line in lines if line.startswith("udic: /")] == [
            f"udic: {inputs[37]}: {reports[37]['error']}"]
        assert lines[-1] == "udic: 99 of 100 files encoded, 1 failed"
        outs[jobs] = contents(out)
        assert len(outs[jobs]) == 99 and "img037.udic" not in outs[jobs]
    assert outs[1] == outs[2]  # byte-identical files
    assert leftovers(tmp_path) == []

    decoded = {}
    (tmp_path / "out1" / "img037.udic").write_bytes(b"UDIC" + bytes(20))  # a bad one on the decode side too
    coded = sorted((tmp_path / "out1").iterdir())
    for jobs in (1, 2):
        dec = tmp_path / f"dec{jobs}"
        result = run(runner, "decode", *map(str, coded), "-o", str(dec), "--jobs", str(jobs), "--quiet")
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines() == [f"udic: {coded[37]}: damaged file (checksum mismatch)"]
        decoded[jobs] = contents(dec)
        assert len(decoded[jobs]) == 99
    assert decoded[1] == decoded[2]
    assert leftovers(tmp_path) == []


def test_parallel_adaptation_is_deterministic(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """--effort 1 on worker threads (own codecs, one torch thread each, whatever torch had: the
    count is the process's and the exact synthesis drops it to one, so a share of it left the
    other worker's analysis on 1 or N threads by timing) matches a serial one-thread run."""
    import torch

    from udic import api

    inputs = make_images(tmp_path / "src", 4, size=(24, 32))
    out = {}
    in_workers: list[int] = []
    real = api.encode_with

    def spying(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        in_workers.append(torch.get_num_threads())
        return real(*args, **kwargs)

    before = torch.get_num_threads()
    try:
        for jobs in (1, 2):
            if jobs == 2:
                torch.set_num_threads(4)  # what a many-core machine has when the batch starts
                monkeypatch.setattr(api, "encode_with", spying)
            dest = tmp_path / f"out{jobs}"
            result = run(runner, "encode", *map(str, inputs), "-o", str(dest), "--model", tiny_cache.id,
                         "--effort", "1", "--seed", "3", "--jobs", str(jobs), "--quiet")
            assert result.exit_code == 0, result.stderr
            assert result.stderr == ""  # no live progress from workers, and --quiet
            out[jobs] = contents(dest)
        assert torch.get_num_threads() == 4  # restored after the batch
    finally:
        torch.set_num_threads(before)
    assert out[1] == out[2]
    assert in_workers == [1] * len(inputs)


def test_notices_come_in_input_order(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    names = []
    for i in range(6):
        path = src / f"c{i}.jpg"
        Image.new("CMYK", (10 + i, 8), (0, 200, 200, 0)).save(path)
        names.append(path)
    result = run(runner, "encode", *map(str, names), "-o", str(tmp_path / "out"), "--model", tiny_cache.id,
                 "--effort", "0", "--jobs", "2")
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "note:" in line]
    assert notes == [f"udic: {p}: note: converted CMYK to RGB" for p in names]
    assert result.stderr.strip().splitlines()[-1] == "udic: 6 of 6 files encoded"


def test_same_destination_twice_is_refused_up_front(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    """x.png and x.jpg would both default to x.udic: refused before any work, with or without --jobs."""
    (tmp_path / "x.png").write_bytes(png_bytes(smooth_image(10, 12, seed=1)))
    Image.fromarray(smooth_image(20, 22, seed=2)).save(tmp_path / "x.jpg")
    for jobs in ("1", "2"):
        result = run(runner, "encode", str(tmp_path / "x.png"), str(tmp_path / "x.jpg"), "--model", tiny_cache.id,
                     "--effort", "0", "--jobs", jobs)
        assert result.exit_code == 2
        assert "both be written to" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "x.udic").exists()


def test_jobs_must_be_positive(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(smooth_image(8, 8)))
    for command in ("encode", "decode"):
        result = run(runner, command, str(tmp_path / "a.png"), "--jobs", "0")
        assert result.exit_code == 2
    assert not (tmp_path / "a.udic").exists()


def test_more_jobs_than_files_and_stdin(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    img = smooth_image(12, 16, seed=4)
    result = runner.invoke(main, ["encode", "-", "-o", "-", "--model", tiny_cache.id, "--effort", "0",
                                  "--jobs", "8"], input=png_bytes(img))
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(main, ["decode", "-", "-o", "-", "--jobs", "8"], input=result.stdout_bytes)
    assert result.exit_code == 0
    assert np.asarray(Image.open(io.BytesIO(result.stdout_bytes))).shape == img.shape


# ---- SIGINT in the middle of a batch ------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2])
def test_sigint_mid_batch(tiny_model: TinyModel, tiny_env: dict[str, str], tmp_path: Path, jobs: int) -> None:
    inputs = make_images(tmp_path / "src", 20, size=(24, 32))
    out = tmp_path / "out"
    args = [str(UDIC), "encode", *map(str, inputs), "-o", str(out), "--model", tiny_model.id,
            "--effort", "1", "--json", "--jobs", str(jobs), "--threads", str(jobs)]
    # A background runner may have SIGINT ignored, and children inherit that: restore the
    # default so the child's Python installs its KeyboardInterrupt handler.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tiny_env, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while not (out.is_dir() and any(p.suffix == ".udic" for p in out.iterdir())):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = stderr.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert "udic: encode: interrupted after " in text.strip().splitlines()[-1]
    present = sorted(out.iterdir())
    assert 1 <= len(present) < 20, "the batch finished before the interrupt landed"
    assert leftovers(tmp_path) == []
    for path in present:  # every file there is complete
        assert path.suffix == ".udic"
        assert ctr.parse(path.read_bytes()).header.width == 32
    reported = {Path(json.loads(line)["output"]).name for line in stdout.decode().splitlines()}
    names = {p.name for p in present}
    assert reported <= names and len(names - reported) <= 1  # at most the file finishing as the signal hit
    count = int(text.strip().splitlines()[-1].split("interrupted after ")[1].split()[0])
    assert count == len(reported)


def test_a_second_sigint_while_stopping_calls_the_way_out() -> None:
    """The first SIGINT of a parallel batch only sets the stop flag; once the batch is stopping,
    a second one leaves at once (it did nothing while running items finished)."""
    import threading

    from udic.batch import _SigintFlag

    stop = threading.Event()
    flag = _SigintFlag(stop)
    try:
        left = []
        flag._handle(signal.SIGINT, None)
        assert flag.hit and stop.is_set() and not left
        flag.on_second = lambda: left.append(True)
        flag._handle(signal.SIGINT, None)
        assert left == [True]
    finally:
        flag.restore()
