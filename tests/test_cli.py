"""The ``udic`` command line, with the tiny model found by id through ``UDIC_CACHE_DIR``.

Most cases run in-process through click's CliRunner; a few run the installed
``udic`` script in a real subprocess to prove errors never surface as tracebacks.
"""

from __future__ import annotations


import io
import json
import re
import sys
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from conftest import UDIC, TinyModel, png_bytes, run, smooth_image
from udic import api
from udic import container as ctr
from udic.container import write_varint







def write_png(path: Path, seed: int = 0, h: int = 40, w: int = 56) -> np.ndarray:
    img = smooth_image(h, w, seed=seed)
    path.write_bytes(png_bytes(img))
    return img


def encode_file(runner: CliRunner, model: TinyModel, src: Path, *extra: str) -> Path:
    result = run(runner, "encode", str(src), "--model", model.id, "--quiet", *extra)
    assert result.exit_code == 0, result.output
    return src.with_suffix(".udic")


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*") if "tmp" in p.name or p.name.startswith(".")]


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# ---- encode / decode / info ---------------------------------------------------------------


def test_encode_decode_default_names(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    src_dir, dec_dir = tmp_path / "src", tmp_path / "dec"
    src_dir.mkdir(), dec_dir.mkdir()
    img = write_png(src_dir / "photo.png")
    result = run(runner, "encode", str(src_dir / "photo.png"), "--model", tiny_cache.id, "-q", "4")
    assert result.exit_code == 0, result.output
    coded = src_dir / "photo.udic"
    header = ctr.parse(coded.read_bytes()).header
    assert (header.width, header.height, header.quality, header.model_id) == (56, 40, 4.0, tiny_cache.id)
    os.replace(coded, dec_dir / "photo.udic")
    result = run(runner, "decode", str(dec_dir / "photo.udic"))  # model found by the header's id
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(dec_dir / "photo.png"))
    assert out.shape == img.shape
    assert np.abs(out.astype(int) - img).mean() < 12
    assert leftovers(tmp_path) == []


def test_decode_default_name_would_overwrite_source(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    """x.png → x.udic → (default) x.png, which exists: refused without --force, original untouched."""
    src = tmp_path / "x.png"
    write_png(src)
    original = src.read_bytes()
    coded = encode_file(runner, tiny_cache, src)
    result = run(runner, "decode", str(coded))
    assert result.exit_code == 1
    assert "--force" in result.stderr
    assert src.read_bytes() == original
    result = run(runner, "decode", str(coded), "--force")
    assert result.exit_code == 0, result.output
    assert src.read_bytes() != original
    assert Image.open(src).size == (56, 40)


def test_encode_json(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, "-q", "2.5", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    size = (tmp_path / "a.udic").stat().st_size
    assert report["bytes"] == size
    assert report["output"] == str(tmp_path / "a.udic")
    assert (report["width"], report["height"], report["quality"]) == (56, 40, 2.5)
    assert report["model_id"] == tiny_cache.id
    assert report["bpp"] == pytest.approx(8 * size / (56 * 40), abs=1e-4)
    # The PSNR is the decoded file's against the source, computed here by hand.
    result = run(runner, "decode", str(tmp_path / "a.udic"), "-o", str(tmp_path / "b.png"))
    assert result.exit_code == 0, result.output
    src = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"), dtype=np.float64)
    dec = np.asarray(Image.open(tmp_path / "b.png").convert("RGB"), dtype=np.float64)
    assert report["psnr"] == pytest.approx(10 * np.log10(255**2 / np.mean((src - dec) ** 2)), abs=1e-3)


@pytest.mark.parametrize("args,lossless", [(["--lossless"], True), (["--max-error", "3"], False)])
def test_encode_json_psnr_of_pixel_files(runner: CliRunner, tmp_path: Path, args: list[str], lossless: bool) -> None:
    Image.fromarray(smooth_image(40, 56, seed=5)).save(tmp_path / "a.png")
    result = run(runner, "encode", str(tmp_path / "a.png"), *args, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    if lossless:
        assert report["psnr"] == "inf"
        return
    run(runner, "decode", str(tmp_path / "a.udic"), "-o", str(tmp_path / "b.png"))
    src = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"), dtype=np.float64)
    dec = np.asarray(Image.open(tmp_path / "b.png").convert("RGB"), dtype=np.float64)
    mse = np.mean((src - dec) ** 2)
    assert 0 < mse <= 9 and report["psnr"] == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-3)


@pytest.mark.parametrize("args,mode,max_error", [(["--lossless"], "lossless", 0),
                                                  (["--max-error", "5"], "near-lossless", 5)])
def test_encode_decode_and_info_name_the_mode_alike(runner: CliRunner, tmp_path: Path, args: list[str], mode: str,
                                                    max_error: int) -> None:
    Image.fromarray(smooth_image(40, 56, seed=7)).save(tmp_path / "a.png")
    records = [json.loads(run(runner, "encode", str(tmp_path / "a.png"), *args, "--json").stdout),
               json.loads(run(runner, "decode", str(tmp_path / "a.udic"), "-o", str(tmp_path / "b.png"),
                              "--json").stdout),
               json.loads(run(runner, "info", str(tmp_path / "a.udic"), "--json").stdout)]
    assert [(r["mode"], r["max_error"]) for r in records] == [(mode, max_error)] * 3
    if max_error:
        assert f"near-lossless ±{max_error}" in run(runner, "info", str(tmp_path / "a.udic")).stdout


def test_info_json_and_overhead(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    img = Image.fromarray(np.dstack([smooth_image(40, 300, seed=3), np.tile(np.arange(300) % 256, (40, 1)).astype(np.uint8)]))
    (tmp_path / "a.png").write_bytes(png_bytes(img))
    coded = encode_file(runner, tiny_cache, tmp_path / "a.png", "-q", "1")
    data = coded.read_bytes()
    cont = ctr.parse(data)
    # Hand count (§1–3): magic, fixed fields, varints, one tag + varint length per section, CRC.
    # version 2 adds tile and effort (u8 each) after latent_crc.
    header = 4 + 1 + len(write_varint(300)) + len(write_varint(40)) + 1 + 1 + 8 + 2 + 4 + 1 + 1 + len(write_varint(3))
    tags = sum(1 + len(write_varint(len(p))) for p in cont.sections.values())
    overhead = header + tags + 4
    assert overhead + sum(len(p) for p in cont.sections.values()) == len(data)

    result = run(runner, "info", str(coded), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["bytes"] == len(data)
    assert (info["width"], info["height"], info["quality"], info["colour"]) == (300, 40, 1.0, "rgb")
    assert info["model_id"] == tiny_cache.id
    assert info["alpha"] is True and info["adapters"] is False and info["icc"] is False
    assert info["header_bytes"] == header
    assert info["overhead_bytes"] == overhead
    assert info["sections"] == {k.name.lower(): len(v) for k, v in cont.sections.items()}
    assert info["latent_crc"] == f"{cont.header.latent_crc:08x}"
    assert info["version"] == ctr.VERSION == 4
    assert (info["tile"], info["adapter_bytes"]) == (0, 0)
    assert info["loop_filter"] == (info["loop_filter_bytes"] > 0) == ("loop_filter" in info["sections"])
    assert info["effort"] == 1  # the CLI default, recorded in the header

    text = run(runner, "info", str(coded))
    assert text.exit_code == 0
    assert f"overhead    {overhead} B (header {header} B)" in text.stdout
    assert "300x40 rgb" in text.stdout and "alpha" in text.stdout


def test_several_inputs_to_directory(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    for i, n in enumerate(names):
        write_png(tmp_path / f"{n}.png", seed=i, h=20 + i, w=30)
    out = tmp_path / "out" / "nested"
    result = run(runner, "encode", *[str(tmp_path / f"{n}.png") for n in names], "-o", str(out), "--model", tiny_cache.id)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.udic", "b.udic", "c.udic"]
    assert "3 of 3 files encoded" in result.stderr
    dec = tmp_path / "dec"
    dec.mkdir()
    result = run(runner, "decode", *[str(out / f"{n}.udic") for n in names], "-o", str(dec), "--json")
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["output"] for r in reports] == [str(dec / f"{n}.png") for n in names]
    for i, n in enumerate(names):
        assert Image.open(dec / f"{n}.png").size == (30, 20 + i)
    assert leftovers(tmp_path) == []


def test_several_inputs_default_names(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    (tmp_path / "d1").mkdir(), (tmp_path / "d2").mkdir()
    write_png(tmp_path / "d1" / "p.png", seed=1)
    write_png(tmp_path / "d2" / "q.png", seed=2)
    result = run(runner, "encode", str(tmp_path / "d1" / "p.png"), str(tmp_path / "d2" / "q.png"), "--model", tiny_cache.id)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d1" / "p.udic").is_file() and (tmp_path / "d2" / "q.udic").is_file()


def test_stdin_stdout(runner: CliRunner, tiny_cache: TinyModel) -> None:
    img = smooth_image(24, 33, seed=4)
    result = run(runner, "encode", "-", "-o", "-", "--model", tiny_cache.id, "--json")
    assert result.exit_code == 1  # no input bytes at all
    result = run(runner, "encode", "-", "-o", "-", "--model", tiny_cache.id, "--json", input=png_bytes(img))
    assert result.exit_code == 0, result.stderr
    coded = result.stdout_bytes
    assert ctr.parse(coded).header.width == 33
    # With image data on stdout, the JSON report goes to stderr.
    assert json.loads(result.stderr.strip().splitlines()[-1])["bytes"] == len(coded)
    result = run(runner, "decode", "-", "-o", "-", input=coded)
    assert result.exit_code == 0, result.stderr
    out = Image.open(io.BytesIO(result.stdout_bytes))
    assert out.format == "PNG" and out.size == (33, 24)


def test_stdin_cannot_join_other_inputs(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    result = run(runner, "encode", "-", str(tmp_path / "a.png"), "-o", str(tmp_path), "--model", tiny_cache.id)
    assert result.exit_code == 2
    result = run(runner, "encode", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "-o", "-", "--model", tiny_cache.id)
    assert result.exit_code == 2
    assert not (tmp_path / "a.udic").exists()


def test_force_needed_to_overwrite(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    dest = tmp_path / "a.udic"
    dest.write_bytes(b"precious")
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id)
    assert result.exit_code == 1
    assert "exists" in result.stderr and "--force" in result.stderr
    assert dest.read_bytes() == b"precious"
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, "--force")
    assert result.exit_code == 0, result.output
    assert ctr.parse(dest.read_bytes()).header.width == 56
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.png", "no such file"),
        (lambda d: (d / "adir").mkdir() or d / "adir", "directory"),
        (lambda d: (d / "notes.png").write_text("hello, not an image") and d / "notes.png", "not an image"),
        (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png", "empty"),
    ],
)
def test_encode_bad_inputs(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path, make, message: str) -> None:
    src = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, "encode", str(src), "--model", tiny_cache.id)
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"udic: {src}: ")
    assert message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _good_udic(runner: CliRunner, model: TinyModel, directory: Path) -> bytes:
    write_png(directory / "good.png", h=16, w=16)
    return encode_file(runner, model, directory / "good.png").read_bytes()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d[: len(d) // 2], "checksum|truncated|damaged"),
        (lambda d: d[:-1], "checksum|truncated|damaged"),
        (lambda d: d[:20] + bytes([d[20] ^ 0x10]) + d[21:], "damaged"),
        (lambda d: b"", "empty"),
        (lambda d: b"GIF89a" + d, "magic"),
    ],
)
def test_decode_bad_files(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path, damage, message: str) -> None:
    data = _good_udic(runner, tiny_cache, tmp_path)
    bad = tmp_path / "bad.udic"
    bad.write_bytes(damage(data))
    out = tmp_path / "out"
    out.mkdir()
    result = run(runner, "decode", str(bad), "-o", str(out / "bad.png"))
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"udic: {bad}: ")
    assert any(m in lines[0] for m in message.split("|"))
    assert list(out.iterdir()) == []  # no partial output, no temp files


def test_decode_unknown_model(runner: CliRunner, tiny_cache: TinyModel, other_model: TinyModel, tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", str(other_model.path))
    assert result.exit_code == 0, result.output
    assert ctr.parse((tmp_path / "a.udic").read_bytes()).header.model_id == other_model.id
    (tmp_path / "a.png").unlink()
    api._codecs.clear()  # a fresh process: only the hub can supply the model
    result = run(runner, "decode", str(tmp_path / "a.udic"))
    assert result.exit_code == 1
    assert other_model.id in result.stderr
    assert not (tmp_path / "a.png").exists()


def test_output_to_missing_directory(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    result = run(runner, "encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "nope" / "a.udic"), "--model", tiny_cache.id)
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert not (tmp_path / "nope").exists()
    coded = encode_file(runner, tiny_cache, tmp_path / "a.png")
    result = run(runner, "decode", str(coded), "-o", str(tmp_path / "nope" / "a.png"))
    assert result.exit_code == 1
    assert not (tmp_path / "nope").exists()


def test_trailing_slash_output_is_a_directory(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    result = run(runner, "encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "newdir") + "/", "--model",
                 tiny_cache.id)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "newdir").is_dir()
    assert ctr.parse((tmp_path / "newdir" / "a.udic").read_bytes()).header.width > 0


@pytest.mark.parametrize("quality", ["9.5", "-1", "100", "nan"])
def test_bad_quality(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path, quality: str) -> None:
    write_png(tmp_path / "a.png")
    result = run(runner, "encode", str(tmp_path / "a.png"), "-q", quality, "--model", tiny_cache.id)
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("udic: encode: ") and "out of range" in lines[0]
    assert not (tmp_path / "a.udic").exists()


def test_non_numeric_quality(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    result = run(runner, "encode", str(tmp_path / "a.png"), "-q", "high", "--model", tiny_cache.id)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert not (tmp_path / "a.udic").exists()


def test_batch_with_one_bad_file(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    write_png(tmp_path / "g1.png", seed=1, h=16, w=20)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    write_png(tmp_path / "g2.png", seed=2, h=16, w=20)
    out = tmp_path / "out"
    args = [str(tmp_path / n) for n in ("g1.png", "bad.png", "g2.png")]
    result = run(runner, "encode", *args, "-o", str(out), "--model", tiny_cache.id, "--json")
    assert result.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["g1.udic", "g2.udic"]
    assert f"udic: {tmp_path / 'bad.png'}: " in result.stderr
    assert "udic: 2 of 3 files encoded, 1 failed" in result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [("error" in r) for r in reports] == [False, True, False]
    # An error record has a success record's keys for where the item came from and was to go.
    assert reports[1]["input"] == args[1] and reports[1]["output"] == str(out / "bad.udic")

    (out / "bad.udic").write_bytes(b"UDIC" + b"\x00" * 30)
    dec = tmp_path / "dec"
    result = run(runner, "decode", *[str(out / n) for n in ("g1.udic", "bad.udic", "g2.udic")], "-o", str(dec))
    assert result.exit_code == 1
    assert sorted(p.name for p in dec.iterdir()) == ["g1.png", "g2.png"]
    assert "udic: 2 of 3 files decoded, 1 failed" in result.stderr
    assert leftovers(tmp_path) == []


def test_info_bad_file(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    data = _good_udic(runner, tiny_cache, tmp_path)
    (tmp_path / "bad.udic").write_bytes(data[:-3])
    result = run(runner, "info", str(tmp_path / "good.udic"), str(tmp_path / "bad.udic"), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["bytes"] == len(data)
    assert error_lines(result)[0].startswith(f"udic: {tmp_path / 'bad.udic'}: ")


def test_info_reads_stdin_once(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    data = _good_udic(runner, tiny_cache, tmp_path)
    result = run(runner, "info", "-", "-", input=data)
    assert result.exit_code == 2 and result.stdout == ""
    assert error_lines(result) == ["udic: info: '-' (stdin) can be given once"]
    assert run(runner, "info", "-", input=data).exit_code == 0


def test_models_lists_the_cached_model(runner: CliRunner, tiny_cache: TinyModel) -> None:
    result = run(runner, "models", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    tiny = [r for r in rows if r["id"] == tiny_cache.id]
    assert len(tiny) == 1
    assert tiny[0]["status"] == "cached" and tiny[0]["name"] == "tiny"
    assert tiny[0]["size"] == tiny_cache.path.stat().st_size
    assert tiny[0]["role"].startswith(("default", "earlier model", "synthetic art", "newer candidate", "high fidelity"))
    text = run(runner, "models")
    assert tiny_cache.id in text.stdout
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "size", "where", "use"]
    default = [r for r in rows if r["default"]]
    if default:  # the default comes first, marked
        assert lines[1].startswith(f"* {default[0]['id']}") and " default" in lines[1]
    verbose = run(runner, "models", "-v").stdout
    described = [r for r in rows if r["description"]]
    assert all(r["description"] in verbose for r in described)


def test_models_tell_earlier_models_from_newer_candidates(runner: CliRunner, tiny_cache: TinyModel) -> None:
    """Registered before the default (or before the high-fidelity model that superseded it): kept so
    that old files decode; after both: a candidate."""
    rows = json.loads(run(runner, "models", "--json").stdout)  # registry order, oldest first
    at = next(i for i, r in enumerate(rows) if r["default"])
    hifi = next((i for i, r in enumerate(rows) if r["role"].startswith("high fidelity")), -1)
    for i, r in enumerate(rows):
        if i != at and not r["role"].startswith(("synthetic art", "high fidelity")):
            assert r["role"].startswith("newer candidate" if i > max(at, hifi) else "earlier model"), r


# ---- the real executable ------------------------------------------------------------------


def run_udic(args: list[str], env: dict[str, str], cwd: Path, input: bytes | None = None) -> subprocess.CompletedProcess:
    assert UDIC.is_file(), UDIC
    return subprocess.run([str(UDIC), *args], input=input, capture_output=True, env=env, cwd=cwd, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    stderr = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("udic: ")
    return lines[0]


def test_subprocess_stdin_to_stdout(tiny_model: TinyModel, tiny_env: dict[str, str], tmp_path: Path) -> None:
    img = smooth_image(24, 40, seed=30)
    proc = run_udic(["encode", "-", "-o", "-", "--model", tiny_model.id, "-q", "2"], tiny_env, tmp_path, png_bytes(img))
    assert proc.returncode == 0, proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    header = ctr.parse(proc.stdout).header
    assert (header.width, header.height, header.model_id, header.rate) == (40, 24, tiny_model.id, 512)
    assert list(tmp_path.iterdir()) == []


def test_subprocess_damaged_stdin(tiny_codec, tiny_env: dict[str, str], tmp_path: Path) -> None:
    """A damaged .udic on stdin: one line on stderr, exit 1, and no output file or temp file."""
    from conftest import loaded

    data = tiny_codec.encode(loaded(smooth_image(16, 16, seed=31)), 3.0).data
    proc = run_udic(["decode", "-", "-o", "x.png"], tiny_env, tmp_path, data[:-5])
    line = assert_one_line_error(proc)
    assert line.startswith("udic: <stdin>: ")
    assert "checksum" in line or "damaged" in line
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert list(tmp_path.iterdir()) == []


def test_subprocess_malformed_registry(tiny_env: dict[str, str], tmp_path: Path) -> None:
    """A broken user registry is reported in one line by the real entry point, no traceback."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "registry.json").write_text('{"models": [{"name": "x"')
    env = dict(tiny_env, UDIC_CACHE_DIR=str(cache))
    proc = run_udic(["models", "--json"], env, tmp_path)
    line = assert_one_line_error(proc)
    assert line.startswith("udic: models: ") and "registry" in line
    assert proc.returncode == 1
    assert proc.stdout == b""


def test_tiled_encode_info_and_decode(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(Image.fromarray(smooth_image(130, 140, seed=4))))
    coded = encode_file(runner, tiny_cache, tmp_path / "a.png", "--tile", "64", "--effort", "0")
    result = run(runner, "info", str(coded))
    assert result.exit_code == 0, result.output
    assert "64x64 px" in result.stdout and "effort 0, no adapters" in result.stdout
    result = run(runner, "decode", str(coded), "-o", str(tmp_path / "b.png"), "--quiet")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "b.png").size == (140, 130)


def test_bad_tile_size_is_one_clear_line(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(Image.fromarray(smooth_image(40, 40, seed=4))))
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, "--tile", "100")
    assert result.exit_code != 0
    lines = error_lines(result)
    assert len(lines) == 1 and "tile size must be 0 or a multiple of 64" in lines[0]
    assert not (tmp_path / "a.udic").exists()


# ---- issue 15: a command-line citizen ------------------------------------------------------------


def _on_a_terminal(args: list[str], env: dict[str, str], cwd: Path, input: bytes | None = None) -> tuple[int, bytes, str]:
    """Run the real ``udic`` with stdout on a pseudo-terminal: (exit, what reached the terminal, stderr)."""
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([str(UDIC), *args], stdin=subprocess.PIPE,
                                stdout=slave, stderr=subprocess.PIPE, env=env, cwd=cwd)
        os.close(slave)
        slave = -1
        _, err = proc.communicate(input, timeout=300)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the child has gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        return proc.returncode, b"".join(chunks), err.decode(errors="replace")
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)


def test_binary_output_to_a_terminal_needs_force(tiny_model: TinyModel, tiny_env: dict[str, str], tmp_path: Path) -> None:
    png = png_bytes(smooth_image(16, 16, seed=2))
    code, on_tty, err = _on_a_terminal(["encode", "-", "-o", "-", "--model", tiny_model.id, "--effort", "0"],
                                       tiny_env, tmp_path, png)
    assert code == 2 and on_tty == b"" and "terminal" in err and len(err.strip().splitlines()) == 1
    coded = tmp_path / "a.udic"
    proc = run_udic(["encode", "-", "-o", str(coded), "--model", tiny_model.id, "--effort", "0"], tiny_env, tmp_path, png)
    assert proc.returncode == 0, proc.stderr.decode()
    code, on_tty, err = _on_a_terminal(["decode", str(coded), "-o", "-"], tiny_env, tmp_path)
    assert code == 2 and on_tty == b"" and "terminal" in err
    code, on_tty, err = _on_a_terminal(["decode", str(coded), "-o", "-", "--force"], tiny_env, tmp_path)
    assert code == 0 and on_tty.startswith(b"\x89PNG"), err


def test_encode_refuses_an_image_suffix_and_its_own_input(runner: CliRunner, tiny_cache: TinyModel,
                                                          tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    original = (tmp_path / "a.png").read_bytes()
    for args in (["-o", str(tmp_path / "out.png")], ["-o", str(tmp_path / "a.png"), "--force"]):
        result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, *args)
        assert result.exit_code != 0
        assert len(error_lines(result)) == 1
    assert (tmp_path / "a.png").read_bytes() == original and not (tmp_path / "out.png").exists()
    # Even under a .udic name, an input is never its own output.
    (tmp_path / "b.udic").write_bytes(png_bytes(smooth_image(8, 8)))
    result = run(runner, "encode", str(tmp_path / "b.udic"), "-o", str(tmp_path / "b.udic"), "--force",
                 "--model", tiny_cache.id)
    assert result.exit_code == 1 and "input file" in result.stderr


def test_several_inputs_to_a_file_name_or_a_glob_leave_no_folder(runner: CliRunner, tiny_cache: TinyModel,
                                                                  tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", seed=1)
    write_png(tmp_path / "b.png", seed=2)
    result = run(runner, "encode", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "single.udic"),
                 "--model", tiny_cache.id)
    assert result.exit_code == 2 and not (tmp_path / "single.udic").exists()
    # A shell glob that matched nothing arrives as its literal text.
    result = run(runner, "encode", str(tmp_path / "*.jpg"), str(tmp_path / "c*.tif"), "-o", str(tmp_path / "out"),
                 "--model", tiny_cache.id)
    assert result.exit_code == 1 and "no such file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_alpha_dropped_by_the_output_format_is_noted(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    rgba = np.dstack([smooth_image(16, 16, seed=5), np.full((16, 16), 128, np.uint8)])
    (tmp_path / "a.png").write_bytes(png_bytes(rgba))
    coded = encode_file(runner, tiny_cache, tmp_path / "a.png", "--effort", "0")
    for suffix in (".jpg", ".ppm", ".bmp"):
        result = run(runner, "decode", str(coded), "-o", str(tmp_path / f"out{suffix}"))
        assert result.exit_code == 0, result.stderr
        assert "alpha dropped" in result.stderr, suffix
    result = run(runner, "decode", str(coded), "-o", str(tmp_path / "out.png"))
    assert result.exit_code == 0 and "alpha" not in result.stderr
    write_png(tmp_path / "opaque.png")
    coded = encode_file(runner, tiny_cache, tmp_path / "opaque.png", "--effort", "0")
    result = run(runner, "decode", str(coded), "-o", str(tmp_path / "opaque.jpg"))
    assert result.exit_code == 0 and "alpha" not in result.stderr


def test_a_terminal_gets_a_summary_line_and_a_log_gets_no_progress(runner: CliRunner, tiny_cache: TinyModel,
                                                                   tmp_path: Path, monkeypatch) -> None:
    from udic import cli

    write_png(tmp_path / "a.png")
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id)
    assert result.exit_code == 0 and result.stderr == ""  # not a terminal: nothing, not even a progress label
    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, "--force")
    assert result.exit_code == 0
    size = (tmp_path / "a.udic").stat().st_size
    summary = result.stderr.replace("\r\x1b[K", "\n").strip().splitlines()[-1]
    assert summary.startswith(f"udic: {tmp_path / 'a.png'}: {size} B, ") and " bpp, " in summary and re.search(r" bpp, \d+\.\d\d dB, 56x40, ", summary)
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, "--force", "--quiet")
    assert result.stderr == ""


def test_decode_summary_on_a_terminal_and_the_default_name_kept(runner: CliRunner, tiny_cache: TinyModel,
                                                                tmp_path: Path, monkeypatch) -> None:
    """decode's default output is usually the image the file was made from: it is kept, and the
    message says how to name another output; a terminal gets a summary line like encode's."""
    from udic import cli

    write_png(tmp_path / "a.png")
    source = (tmp_path / "a.png").read_bytes()
    coded = encode_file(runner, tiny_cache, tmp_path / "a.png", "--effort", "0")
    result = run(runner, "decode", str(coded))
    assert result.exit_code == 1 and (tmp_path / "a.png").read_bytes() == source
    assert result.stderr.strip() == f"udic: {coded}: {tmp_path / 'a.png'} exists: name the output with -o (or use --force to replace it)"
    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    result = run(runner, "decode", str(coded), "-o", str(tmp_path / "b.png"))
    assert result.exit_code == 0
    summary = result.stderr.replace("\r\x1b[K", "\n").strip().splitlines()[-1]
    assert summary.startswith(f"udic: {coded}: 56x40, quality ") and summary.endswith(f" s -> {tmp_path / 'b.png'}")


def test_a_pixel_file_names_no_model_and_its_crc_covers_samples(runner: CliRunner, tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    result = run(runner, "encode", str(tmp_path / "a.png"), "--lossless", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model_id"] is None
    coded = tmp_path / "a.udic"
    assert json.loads(run(runner, "info", str(coded), "--json").stdout)["model_id"] is None
    text = run(runner, "info", str(coded)).stdout
    assert "  sample crc  " in text and "latent crc" not in text and "  model " not in text
    result = run(runner, "decode", str(coded), "-o", str(tmp_path / "b.png"), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["model_id"] is None


def test_help_texts(runner: CliRunner) -> None:
    text = " ".join(runner.invoke(__import__("udic.cli").cli.main, ["encode", "--help"]).output.split())
    assert "within 3 %)" in text and "%%" not in text
    # what --target-psnr does above the network's reach: the high-fidelity model or pixel coding, or with
    # --lossy-only the best, exit 0
    assert "near-lossless or lossless" in text and "best learned quality" in text and "exit 0" in text
    assert "high-fidelity model" in text


def test_an_unreachable_psnr_encodes_its_best_with_a_note(runner: CliRunner, tiny_cache: TinyModel,
                                                                     tmp_path: Path) -> None:
    """With --lossy-only (as cwebp -psnr does): the best learned file, a note, exit 0.
    Without it the pixel coder meets the target, at effort 0 too."""
    write_png(tmp_path / "a.png", h=16, w=16)
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, "--target-psnr", "99",
                 "--effort", "0", "--json", "--lossy-only")
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1 and "target 99 dB" in notes[0]
    report = json.loads(result.stdout)
    assert (tmp_path / "a.udic").is_file() and report["bytes"] > 0 and report["mode"] == "learned"
    result = run(runner, "encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, "--target-psnr", "99",
                 "--effort", "0", "--json", "--force")
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1 and re.search(r"(lossless|exact here): --target-psnr 99 is above", notes[0])
    report = json.loads(result.stdout)
    assert report["mode"] in ("lossless", "near-lossless") and report["psnr"] == "inf"


@pytest.mark.parametrize("argv,expected", [
    (["encode", "a.png", "--effort", "9"],
     "udic: encode: Invalid value for '--effort': 9 is not in the range 0<=x<=5 (see 'udic encode --help')"),
    (["encode"], "udic: encode: Missing argument 'INPUTS...' (see 'udic encode --help')"),
    (["frobnicate"], "udic: No such command 'frobnicate' (see 'udic --help')"),
])
def test_usage_errors_are_one_line_in_udics_shape(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                                   argv: list[str], expected: str) -> None:
    """click's own errors read like udic's ("udic: encode: problem"), with the help hint."""
    from udic import cli

    monkeypatch.setattr(sys, "argv", ["udic", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli.run()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == expected


def test_an_endless_input_is_refused_at_the_cap(runner, tmp_path, monkeypatch) -> None:
    """stdin and devices have no size to check first: reading stops past MAX_INPUT_BYTES."""
    from udic import cli

    monkeypatch.setattr(cli, "MAX_INPUT_BYTES", 1000)
    result = runner.invoke(cli.main, ["encode", "-", "-o", str(tmp_path / "x.udic")], input=b"\x00" * 5000)
    assert result.exit_code != 0
    assert "input is over" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.udic").exists()


def test_paths_that_name_no_file_or_the_same_output(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_png(tmp_path / "a.png")
    result = run(runner, "encode", ".")
    assert result.exit_code == 1 and "udic: .: is a directory" in result.stderr
    # the same file written two ways would be encoded twice into one output
    result = run(runner, "encode", "--lossless", "a.png", str(tmp_path / "a.png"))
    assert result.exit_code == 2 and "would both be written to" in result.stderr
    assert not (tmp_path / "a.udic").exists()


def test_a_file_named_dash_does_not_stop_stdin_to_stdout(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_png(tmp_path / "a.png")
    assert run(runner, "encode", "--lossless", "a.png").exit_code == 0
    (tmp_path / "-").write_bytes(b"")
    result = run(runner, "decode", "-", "-o", "-", "--force", input=(tmp_path / "a.udic").read_bytes())
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes.startswith(b"\x89PNG")


def test_force_writes_into_a_fifo_instead_of_replacing_it(runner: CliRunner, tmp_path: Path) -> None:
    """A rename over a device or a FIFO replaces it with a plain file (as root, /dev/null)."""
    import stat
    import threading

    write_png(tmp_path / "a.png")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    result = run(runner, "encode", "--lossless", str(tmp_path / "a.png"), "-o", str(fifo), "--force")
    reader.join(timeout=60)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got and got[0].startswith(b"UDIC")


def test_options_that_contradict_the_request_are_refused(runner: CliRunner, tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    result = run(runner, "encode", "-q", "10", "--lossy-only", str(tmp_path / "a.png"))
    assert result.exit_code == 2 and "--lossy-only rules out" in result.stderr
    result = run(runner, "encode", "--lossless", "--model", "no-such-model", str(tmp_path / "a.png"))
    assert result.exit_code == 1 and "unknown model" in result.stderr
    assert not (tmp_path / "a.udic").exists()


def test_a_format_that_disagrees_with_the_suffix_and_a_nan_budget_are_refused(runner: CliRunner, tmp_path: Path) -> None:
    write_png(tmp_path / "a.png")
    assert run(runner, "encode", "--lossless", str(tmp_path / "a.png")).exit_code == 0
    src = str(tmp_path / "a.udic")
    result = run(runner, "decode", src, "--format", "png", "-o", str(tmp_path / "o.jpg"))
    assert result.exit_code == 2 and "disagrees with -o" in result.stderr and not (tmp_path / "o.jpg").exists()
    assert run(runner, "decode", src, "--format", "jpeg", "-o", str(tmp_path / "o.jpg")).exit_code == 0
    result = run(runner, "encode", "--time-budget", "nan", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.udic"))
    assert result.exit_code == 2 and "--time-budget" in result.stderr
