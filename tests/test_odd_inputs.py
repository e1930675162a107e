"""An odd-image corpus, generated here, through the real ``udic encode``/``udic decode`` commands.

``test_imageio.py`` checks how each odd input is *loaded*; these tests check the whole
command: the file is encoded with the tiny model, decoded back, the notice reaches the
user, and broken inputs or outputs end in one error line per file with nothing left
behind.  Output trouble uses real filesystems: a read-only and a full 64 KiB tmpfs
(root, where mounting works), or a file-size limit in a subprocess otherwise.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from conftest import TinyModel, png_bytes, run, smooth_image
from udic import container as ctr








def encode(runner: CliRunner, model: TinyModel, *args: str) -> Result:
    return run(runner, "encode", *args, "--model", model.id, "--effort", "0")


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if "tmp" in p.name or p.name.startswith("."))


def round_trip(runner: CliRunner, model: TinyModel, src: Path, *extra: str) -> tuple[Result, Image.Image]:
    coded = src.parent / (src.stem + ".udic")
    enc = encode(runner, model, str(src), "-o", str(coded), *extra)
    assert enc.exit_code == 0, enc.output
    out = src.parent / (src.stem + ".out.png")
    dec = run(runner, "decode", str(coded), "-o", str(out))
    assert dec.exit_code == 0, dec.output
    image = Image.open(out)
    image.load()
    return enc, image


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def rgb16_png(width: int, height: int, seed: int = 0) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 65536, (height, width * 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


# ---- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("h, w", [(1, 1), (1, 97), (97, 1), (2, 3)])
def test_tiny_sizes(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path, h: int, w: int) -> None:
    (tmp_path / "t.png").write_bytes(png_bytes(smooth_image(h, w, seed=h * 100 + w)))
    _, image = round_trip(runner, tiny_cache, tmp_path / "t.png")
    assert image.size == (w, h) and image.mode == "RGB"
    assert ctr.parse((tmp_path / "t.udic").read_bytes()).header.width == w


# ---- formats and modes ---------------------------------------------------------------------------


def test_16bit_rgb_png(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    (tmp_path / "c16.png").write_bytes(rgb16_png(24, 10))
    enc, image = round_trip(runner, tiny_cache, tmp_path / "c16.png")
    assert f"udic: {tmp_path / 'c16.png'}: note: reduced 16-bit to 8 bits per channel" in enc.stderr
    assert image.size == (24, 10) and image.mode == "RGB"


def test_16bit_gray_png_stays_gray(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    values = (np.linspace(0, 65535, 30 * 20).reshape(20, 30)).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    enc, image = round_trip(runner, tiny_cache, tmp_path / "g16.png")
    assert "reduced 16-bit" in enc.stderr
    assert image.mode == "L" and image.size == (30, 20)
    assert ctr.parse((tmp_path / "g16.udic").read_bytes()).header.colour == ctr.Colour.GRAY


def test_palette_with_transparency_keeps_alpha_exactly(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    im = Image.new("P", (21, 13))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 250, 250, 250])
    idx = (np.add.outer(np.arange(13), np.arange(21)) // 5 % 4).astype(np.uint8)
    im.putdata(idx.ravel().tolist())
    im.save(tmp_path / "p.png", transparency=1)
    enc, image = round_trip(runner, tiny_cache, tmp_path / "p.png")
    assert "converted palette to RGB" in enc.stderr
    assert image.mode == "RGBA" and image.size == (21, 13)
    np.testing.assert_array_equal(np.asarray(image)[..., 3], np.where(idx == 1, 0, 255))


def test_cmyk_jpeg(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    Image.new("CMYK", (20, 12), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    enc, image = round_trip(runner, tiny_cache, tmp_path / "c.jpg")
    assert "note: converted CMYK to RGB" in enc.stderr
    assert image.mode == "RGB" and image.size == (20, 12)
    mean = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert mean[0] > mean[1] + 80 and mean[0] > mean[2] + 80  # still red


def test_exif_rotated_jpeg_is_encoded_as_displayed(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    arr = np.full((8, 20, 3), 30, dtype=np.uint8)
    arr[:, :4] = 230  # left band bright; orientation 6 shows it at the top
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif, quality=95)
    _, image = round_trip(runner, tiny_cache, tmp_path / "r.jpg")
    assert image.size == (8, 20)
    out = np.asarray(image).astype(int)
    assert out[:3].mean() > out[-3:].mean() + 80


@pytest.mark.parametrize("fmt, frames", [("gif", 3), ("webp", 2)])
def test_animated_first_frame_with_notice(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path,
                                          fmt: str, frames: int) -> None:
    colours = [(220, 30, 30), (30, 220, 30), (30, 30, 220)][:frames]
    images = [Image.new("RGB", (24, 16), c) for c in colours]
    extra = {"lossless": True} if fmt == "webp" else {}
    images[0].save(tmp_path / f"a.{fmt}", save_all=True, append_images=images[1:], duration=100, **extra)
    enc, image = round_trip(runner, tiny_cache, tmp_path / f"a.{fmt}")
    assert f"udic: {tmp_path / f'a.{fmt}'}: note: used the first of {frames} frames" in enc.stderr
    assert image.size == (24, 16)
    mean = np.asarray(image.convert("RGB")).reshape(-1, 3).mean(axis=0)
    assert mean[0] > mean[1] + 80  # the red first frame


def test_quiet_hides_notices(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    result = encode(runner, tiny_cache, str(tmp_path / "c.jpg"), "--quiet")
    assert result.exit_code == 0 and result.stderr == ""


# ---- broken or wrong inputs ------------------------------------------------------------------------


def test_encode_batch_of_broken_inputs(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    """Good files around a truncated PNG, a non-image, an empty file and a directory."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a_good.png").write_bytes(png_bytes(smooth_image(16, 20, seed=1)))
    full = png_bytes(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (src / "b_truncated.png").write_bytes(full[: len(full) // 2])
    (src / "c_text.png").write_text("not an image at all\n")
    (src / "d_empty.png").write_bytes(b"")
    (src / "e_dir.png").mkdir()
    (src / "f_good.png").write_bytes(png_bytes(smooth_image(12, 9, seed=2)))
    inputs = sorted(src.iterdir())
    out = tmp_path / "out"
    result = encode(runner, tiny_cache, *map(str, inputs), "-o", str(out))
    assert result.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_good.udic", "f_good.udic"]
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith(f"udic: {src}")]
    assert [e.split(": ")[1] for e in errors] == [str(src / n) for n in
                                                  ("b_truncated.png", "c_text.png", "d_empty.png", "e_dir.png")]
    assert "corrupt or truncated" in errors[0] or "cannot read image" in errors[0]
    assert "not an image" in errors[1] and "empty" in errors[2] and "directory" in errors[3]
    assert lines[-1] == "udic: 2 of 6 files encoded, 4 failed"
    assert leftovers(tmp_path) == []


def test_decode_wrong_inputs(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(smooth_image(16, 20, seed=3)))
    assert encode(runner, tiny_cache, str(tmp_path / "a.png")).exit_code == 0
    (tmp_path / "image.udic").write_bytes((tmp_path / "a.png").read_bytes())  # a PNG named .udic
    (tmp_path / "empty.udic").write_bytes(b"")
    (tmp_path / "dir.udic").mkdir()
    inputs = [tmp_path / n for n in ("a.udic", "image.udic", "empty.udic", "dir.udic", "missing.udic")]
    out = tmp_path / "out"
    result = run(runner, "decode", *map(str, inputs), "-o", str(out))
    assert result.exit_code == 1
    assert [p.name for p in out.iterdir()] == ["a.png"]
    text = result.stderr
    assert f"udic: {inputs[1]}: not a .udic file (bad magic)" in text
    assert f"udic: {inputs[2]}: empty file" in text
    assert f"udic: {inputs[3]}: is a directory" in text
    assert f"udic: {inputs[4]}: no such file" in text
    assert text.strip().splitlines()[-1] == "udic: 1 of 5 files decoded, 4 failed"


# ---- output trouble ---------------------------------------------------------------------------------


def _mount_tmpfs(directory: Path, options: str) -> None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root on Linux")
    directory.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
                          capture_output=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")


def _umount(directory: Path) -> None:
    subprocess.run(["umount", str(directory)], capture_output=True, timeout=30)


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 64 KiB tmpfs, filled to the last byte."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=64k,mode=0777")
    try:
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 512):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield disk
    finally:
        _umount(disk)


@pytest.fixture
def read_only_dir(tmp_path: Path):
    if os.geteuid() != 0:  # permissions stop ordinary users
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        yield locked
        locked.chmod(0o700)
        return
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=64k")
    try:
        yield ro
    finally:
        _umount(ro)


def _coded(runner: CliRunner, model: TinyModel, tmp_path: Path) -> Path:
    (tmp_path / "a.png").write_bytes(png_bytes(smooth_image(40, 56, seed=5)))
    result = encode(runner, model, str(tmp_path / "a.png"))
    assert result.exit_code == 0, result.output
    return tmp_path / "a.udic"


def test_unwritable_output(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path, read_only_dir: Path) -> None:
    coded = _coded(runner, tiny_cache, tmp_path)
    result = encode(runner, tiny_cache, str(tmp_path / "a.png"), "-o", str(read_only_dir / "a.udic"))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"udic: {tmp_path / 'a.png'}: cannot write")
    result = run(runner, "decode", str(coded), "-o", str(read_only_dir / "a.png"))
    assert result.exit_code == 1 and "cannot write" in result.stderr
    assert list(read_only_dir.iterdir()) == []


def test_full_disk(runner: CliRunner, tiny_cache: TinyModel, tmp_path: Path, full_disk: Path) -> None:
    coded = _coded(runner, tiny_cache, tmp_path)
    result = encode(runner, tiny_cache, str(tmp_path / "a.png"), "-o", str(full_disk / "a.udic"))
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    result = run(runner, "decode", str(coded), "-o", str(full_disk / "a.bmp"))
    assert result.exit_code == 1 and "No space left on device" in result.stderr
    assert [p.name for p in full_disk.iterdir()] == ["filler"]  # no partial output, no temp file


_FSIZE_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
    sys.argv = ["udic", *sys.argv[1:]]
    from udic.cli import run
    run()
    """
)


def test_file_size_limit_in_subprocess(tiny_cache: TinyModel, tiny_env: dict[str, str], runner: CliRunner,
                                       tmp_path: Path) -> None:
    """Where no tmpfs can be mounted, a file-size limit stands in for a full disk."""
    pytest.importorskip("resource")
    coded = _coded(runner, tiny_cache, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, "decode", str(coded), "-o", str(out / "a.bmp")],
                          capture_output=True, env=tiny_env, timeout=600)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.strip() == f"udic: {coded}: cannot write {out / 'a.bmp'}: File too large"
    assert list(out.iterdir()) == []

