"""The command line starts like a command-line tool: ``--help``, ``info``, ``models`` and
every argument or file error run without importing torch or compressai.

Behavioural, not timed: each case runs in a fresh interpreter, which then reports
whether torch or compressai was imported (the import, not a stopwatch, is what costs
seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TinyModel, png_bytes, smooth_image

HEAVY = ("torch", "compressai")

# Run the CLI in-process, then print which heavy modules got imported, whatever the exit.
_PROBE = """
import json, sys
from udic.cli import run
code = 0
try:
    run()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
print(json.dumps({"loaded": [m for m in %r if m in sys.modules], "code": code}), file=sys.stderr)
""" % (HEAVY,)


def probe(args: list[str], env: dict[str, str], cwd: Path) -> tuple[list[str], int, list[str]]:
    """(heavy modules imported, exit code, the CLI's own stderr lines) of ``udic ARGS``."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, env=env, cwd=cwd,
                          timeout=300, stdin=subprocess.DEVNULL)
    lines = proc.stderr.decode().strip().splitlines()
    report = json.loads(lines[-1])
    return report["loaded"], report["code"], lines[:-1]


@pytest.fixture
def coded(tiny_codec, tmp_path: Path) -> Path:
    from conftest import loaded

    path = tmp_path / "k.udic"
    path.write_bytes(tiny_codec.encode(loaded(smooth_image(16, 16, seed=1)), 2.0).data)
    return path


def test_help_and_models_import_neither_torch_nor_compressai(tiny_env: dict[str, str], tmp_path: Path) -> None:
    for args in (["--help"], ["encode", "--help"], ["decode", "--help"], ["compare", "--help"], ["models"]):
        loaded, code, _ = probe(args, tiny_env, tmp_path)
        assert code == 0, args
        assert loaded == [], (args, loaded)


def test_info_imports_neither(coded: Path, tiny_env: dict[str, str], tmp_path: Path) -> None:
    loaded, code, _ = probe(["info", str(coded)], tiny_env, tmp_path)
    assert (loaded, code) == ([], 0)
    loaded, code, _ = probe(["info", "--json", str(coded)], tiny_env, tmp_path)
    assert (loaded, code) == ([], 0)


def _bad_cases(d: Path, model: TinyModel, coded: Path) -> list[tuple[list[str], str]]:
    """(argv, text the one error line must contain)."""
    good = d / "good.png"
    good.write_bytes(png_bytes(smooth_image(16, 16)))
    (d / "empty.png").write_bytes(b"")
    (d / "exists.udic").write_bytes(b"precious")
    m = ["--model", model.id]
    return [
        (["encode", str(good), "-q", "90", *m], "-q 90 is out of range"),
        (["encode", str(good), "-q", "nan", *m], "out of range"),
        (["encode", str(d / "missing.png"), *m], "no such file"),
        (["encode", str(d / "empty.png"), *m], "empty"),
        (["encode", str(d), *m], "directory"),
        (["encode", str(good), "-o", str(d / "exists.udic"), *m], "exists"),
        (["encode", str(good), "-o", str(d / "k.gif"), *m], "k.gif"),
        (["encode", str(good), "-o", str(d / "out.png"), *m], "out.png"),
        (["encode", str(good), "-o", str(d / "nope" / "a.udic"), *m], "does not exist"),
        (["encode", str(good), "--model", "no-such-model"], "unknown model"),
        (["encode", str(good), "--tile", "100", *m], "tile size"),
        (["encode", str(good), str(good), "-o", str(d / "one.udic"), *m], "one.udic"),
        (["decode", str(coded), "-o", str(d / "k.gif")], "k.gif"),
        (["decode", str(coded), "-o", str(d / "k.udic")], "k.udic"),
        (["decode", str(coded), "--format", "gif"], "--format gif"),
        (["decode", str(d / "missing.udic")], "no such file"),
        (["decode", str(coded), "-o", str(d / "nope" / "k.png")], "does not exist"),
        (["decode", str(coded), "--model", "no-such-model"], "unknown model"),
        (["info", str(d / "missing.udic")], "no such file"),
    ]


def test_every_argument_and_file_error_is_one_line_without_torch(
    coded: Path, tiny_model: TinyModel, tiny_env: dict[str, str], tmp_path: Path
) -> None:
    work = tmp_path / "w"
    work.mkdir()
    for args, text in _bad_cases(work, tiny_model, coded):
        before = sorted(p.name for p in work.rglob("*"))
        loaded, code, lines = probe(args, tiny_env, work)
        assert code != 0, args
        assert len(lines) == 1 and lines[0].startswith("udic: ") and text in lines[0], (args, lines)
        assert loaded == [], (args, loaded)
        assert sorted(p.name for p in work.rglob("*")) == before, args  # nothing written, no folder made


def test_a_damaged_file_is_refused_before_the_model_loads(coded: Path, tiny_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.udic"
    bad.write_bytes(coded.read_bytes()[:-3])
    loaded, code, lines = probe(["decode", str(bad), "-o", str(tmp_path / "bad.png")], tiny_env, tmp_path)
    assert code == 1 and len(lines) == 1 and loaded == []


@pytest.mark.skipif(os.path.exists("/proc/driver/nvidia"), reason="a CUDA driver is present")
def test_device_cuda_without_a_driver_is_refused_without_torch(coded: Path, tiny_env: dict[str, str],
                                                              tmp_path: Path) -> None:
    env = dict(tiny_env, PATH="/nonexistent")  # no nvidia-smi either
    loaded, code, lines = probe(["decode", str(coded), "--device", "cuda"], env, tmp_path)
    assert code == 2 and len(lines) == 1 and "--device cuda" in lines[0]
    assert loaded == []
    assert not (tmp_path / "k.png").exists()


def test_cli_and_api_modules_import_lazily(tiny_env: dict[str, str], tmp_path: Path) -> None:
    code = ("import sys, udic.cli, udic.hub, udic.checks, udic.batch; "
            "print(sorted(m for m in ('torch', 'compressai', 'numpy', 'PIL', 'click') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=tiny_env, check=True)
    assert out.stdout.strip() == "['click']"  # --help needs only the CLI toolkit itself
    code = "import sys, udic.api; print(sorted(m for m in ('torch', 'compressai', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=tiny_env, check=True)
    assert out.stdout.strip() == "[]"  # the codec, Pillow and torch load on first use
    code = "import sys, udic.hub; print('click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=tiny_env, check=True)
    assert out.stdout.strip() == "False"  # the hub reports progress through a callback


def test_a_parallel_lossless_batch_imports_no_torch(tiny_env: dict[str, str], tmp_path: Path) -> None:
    """No file of a --lossless batch needs a network: splitting torch's threads between the
    workers had imported it (~2.5 s) for nothing."""
    for i in range(3):
        (tmp_path / f"p{i}.png").write_bytes(png_bytes(smooth_image(16, 16, seed=i)))
    args = ["encode", "--lossless", "-j", "2", "--quiet", *(str(tmp_path / f"p{i}.png") for i in range(3)),
            "-o", str(tmp_path / "out")]
    loaded, code, _ = probe(args, tiny_env, tmp_path)
    assert (loaded, code) == ([], 0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.udic", "p1.udic", "p2.udic"]
