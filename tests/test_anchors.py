"""Tests for udic.anchors with the real codec tools (Debian packages installed by .ci/run).

No codec is mocked.  The Debian codecs (libjxl-tools, libavif-bin, webp, ffmpeg, Pillow's
libjpeg/OpenJPEG) are required on CI and skipped with a reason elsewhere; BPG and VVC are
not packaged in Debian, so their tests run only where bpgenc/bpgdec and vvencapp/vvdecapp
happen to be on PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udic.anchors import (
    CODECS,
    CodecError,
    _sniff,
    available_codecs,
    detect_codec,
    get_codec,
    roundtrip,
    run_tool,
)
from udic.errors import InputError, UdicError
from udic.metrics import psnr_rgb

# codec -> (Debian package that provides its tools, low-rate setting, high-rate setting)
DEBIAN = {
    "jpeg": ("python3-pil / libjpeg (via Pillow)", 10, 90),
    "webp": ("webp", 10, 90),
    "jxl": ("libjxl-tools", 8.0, 0.5),
    "avif": ("libavif-bin", 50, 10),
    "hevc": ("ffmpeg (libx265)", 40, 12),
    "j2k": ("Pillow with OpenJPEG", 80, 8),
}


def _require(name: str) -> None:
    """Skip with the package to install, but fail on CI, where .ci/run installs everything."""
    reason = get_codec(name).unavailable_reason()
    if reason:
        msg = f"{name}: {reason} (apt-get install {DEBIAN[name][0]})"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture
def ref_png(tmp_path: Path) -> Path:
    """64×48 smooth gradients plus mild noise: tiny, but photo-like enough for the codecs."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    img = np.stack([x * 4.0, y * 5.0, 128 + 60 * np.sin(x / 7.0 + y / 11.0)], axis=-1)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "ref.png"
    Image.fromarray(img).save(path)
    return path


@pytest.mark.parametrize("name", sorted(DEBIAN))
def test_roundtrip_real_codec(name: str, ref_png: Path, tmp_path: Path) -> None:
    _require(name)
    codec = get_codec(name)
    _, low, high = DEBIAN[name]
    ref = _rgb(ref_png)
    results = {}
    for q in (low, high):
        work = tmp_path / f"q{q}"
        work.mkdir()
        size, decoded = roundtrip(codec, ref_png, q, work)
        dec = _rgb(decoded)
        assert dec.shape == ref.shape
        results[q] = (size, psnr_rgb(ref, dec))
        # Magic-byte detection must recognise the file even without its suffix.
        renamed = work / "no_suffix.bin"
        shutil.copyfile(work / f"rt{codec.suffixes[0]}", renamed)
        detected = detect_codec(renamed)
        assert detected is not None and detected.name == name
    (size_lo, psnr_lo), (size_hi, psnr_hi) = results[low], results[high]
    assert size_hi > size_lo, f"{name}: more bits expected at the high-rate setting"
    assert psnr_hi > psnr_lo
    assert psnr_hi > 30.0, f"{name}: decoded image does not resemble the reference ({psnr_hi:.1f} dB)"


def test_default_qualities_are_sane() -> None:
    for name, cls in CODECS.items():
        qs = cls().default_qualities()
        assert 5 <= len(qs) <= 10, name  # udic: the default's seven learned rates and three near-lossless steps
        assert len(set(qs)) == len(qs), name


def test_hevc_colour_conversion_is_consistent(ref_png: Path, tmp_path: Path) -> None:
    """Near-lossless x265 must come back near-identical; a matrix/range mismatch costs > 20 dB."""
    _require("hevc")
    size, decoded = roundtrip(get_codec("hevc"), ref_png, 0, tmp_path)
    assert psnr_rgb(_rgb(ref_png), _rgb(decoded)) > 45.0
    head = (tmp_path / "rt.hevc").read_bytes()[:6]
    assert head == b"\x00\x00\x00\x01\x40\x01"  # Annex-B stream starting with a VPS


def test_anchor_command_lines_carry_the_anchor_settings() -> None:
    hevc = " ".join(get_codec("hevc").encode_commands(32))
    for flag in ("libx265", "-preset veryslow", "-tune psnr", "yuv444p", "keyint=1", "qp=32", "out_range=full"):
        assert flag in hevc
    assert "-e 7" in get_codec("jxl").encode_commands(1.5)[0]
    assert "-y 444" in get_codec("avif").encode_commands(30)[0]
    assert "-m 6" in get_codec("webp").encode_commands(50)[0] or "method=6" in get_codec("webp").encode_commands(50)[0]
    assert "-f 444 -b 8 -q 30" in get_codec("bpg").encode_commands(30)[0]
    vvc = get_codec("vvc").encode_commands(32)
    assert any("vvencapp" in c and "-q 32" in c and "--qpa 0" in c for c in vvc)
    assert "quality=75" in get_codec("jpeg").encode_commands(75)[0]


def test_tool_failure_is_one_line_codec_error(tmp_path: Path) -> None:
    _require("jxl")
    bad = tmp_path / "broken.jxl"
    bad.write_bytes(b"\xff\x0a" + b"not a real codestream" * 4)
    with pytest.raises(CodecError) as info:
        get_codec("jxl").decode(bad, tmp_path / "out.png")
    msg = str(info.value)
    assert "\n" not in msg and "djxl" in msg
    assert isinstance(info.value, UdicError)


def test_truncated_hevc_is_reported(ref_png: Path, tmp_path: Path) -> None:
    _require("hevc")
    codec = get_codec("hevc")
    stream = tmp_path / "a.hevc"
    codec.encode(ref_png, stream, 30)
    cut = tmp_path / "cut.hevc"
    cut.write_bytes(stream.read_bytes()[:12])
    with pytest.raises(CodecError) as info:
        codec.decode(cut, tmp_path / "out.png")
    assert "\n" not in str(info.value)


def test_run_tool_missing_and_timeout() -> None:
    with pytest.raises(CodecError, match="not found on PATH"):
        run_tool(["udic-no-such-codec-tool", "-h"])
    sleep = shutil.which("sleep")
    if sleep is None:
        pytest.skip("no sleep(1) to time out")
    with pytest.raises(CodecError, match="timed out"):
        run_tool([sleep, "5"], timeout=0.2)


def test_sniff_headers() -> None:
    assert _sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "jpeg"
    assert _sniff(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "webp"
    assert _sniff(b"\x00\x00\x00\x0cJXL \r\n\x87\n") == "jxl"
    assert _sniff(b"BPG\xfb\x00") == "bpg"
    assert _sniff(b"\xff\x4f\xff\x51\x00") == "j2k"
    assert _sniff(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf") == "avif"
    assert _sniff(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") is None
    assert _sniff(b"\x00\x00\x00\x01\x40\x01\x0c\x01") == "hevc"  # VPS, nal type 32
    assert _sniff(b"\x00\x00\x00\x01\x00\x79\x00\x0d") == "vvc"  # SPS, nal type 15, tid+1 = 1
    assert _sniff(b"hello world") is None


def test_detect_codec_suffix_fallback_and_unknown(tmp_path: Path) -> None:
    f = tmp_path / "x.udic"
    f.write_bytes(b"\x01\x02\x03\x04")
    codec = detect_codec(f)
    assert codec is not None and codec.name == "udic"
    g = tmp_path / "x.dat"
    g.write_bytes(b"\x01\x02\x03\x04")
    assert detect_codec(g) is None
    with pytest.raises(InputError):
        detect_codec(tmp_path / "missing.jpg")


def test_get_codec_aliases_and_unknown() -> None:
    assert get_codec("JPG").name == "jpeg"
    assert get_codec("x265").name == "hevc"
    assert get_codec("h266").name == "vvc"
    with pytest.raises(InputError, match="unknown codec"):
        get_codec("mpeg1")


def test_missing_tools_give_reasons() -> None:
    reasons = available_codecs()
    assert set(reasons) == set(CODECS)
    for name, tools in (("bpg", ("bpgenc", "bpgdec")), ("vvc", ("vvencapp", "vvdecapp"))):
        if all(shutil.which(t) for t in tools):
            assert reasons[name] is None
        else:
            assert reasons[name] and "not found on PATH" in reasons[name]


@pytest.mark.skipif(
    not (shutil.which("bpgenc") and shutil.which("bpgdec")),
    reason="bpgenc/bpgdec not on PATH (BPG is not packaged in Debian)",
)
def test_bpg_roundtrip(ref_png: Path, tmp_path: Path) -> None:
    codec = get_codec("bpg")
    size, decoded = roundtrip(codec, ref_png, 20, tmp_path)
    assert size > 0 and psnr_rgb(_rgb(ref_png), _rgb(decoded)) > 30.0
    assert detect_codec(tmp_path / "rt.bpg").name == "bpg"


@pytest.mark.skipif(
    not (shutil.which("vvencapp") and shutil.which("vvdecapp") and shutil.which("ffmpeg")),
    reason="vvencapp/vvdecapp not on PATH (VVenC/VVdeC are not packaged in Debian)",
)
def test_vvc_roundtrip(ref_png: Path, tmp_path: Path) -> None:
    codec = get_codec("vvc")
    size, decoded = roundtrip(codec, ref_png, 22, tmp_path)
    assert size > 0 and psnr_rgb(_rgb(ref_png), _rgb(decoded)) > 30.0
    assert detect_codec(tmp_path / "rt.266").name == "vvc"


def test_udic_roundtrip(ref_png: Path, tmp_path: Path) -> None:
    codec = get_codec("udic")
    assert codec.unavailable_reason() is None
    q = codec.default_qualities()[-1]
    size, decoded = roundtrip(codec, ref_png, q, tmp_path)
    assert size > 0 and psnr_rgb(_rgb(ref_png), _rgb(decoded)) > 20.0


def test_a_timed_out_tool_takes_what_it_started_with_it(tmp_path: Path) -> None:
    """A wrapper script that starts a long child: on the timeout the whole process group goes,
    so no orphan keeps running (and writing) after udic reported the timeout."""
    import os
    import time

    marker = tmp_path / "still-running"
    script = tmp_path / "wrapper.sh"
    script.write_text(f"#!/bin/sh\n(sleep 1.5; touch '{marker}') &\nsleep 30\n")
    script.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(CodecError, match="timed out"):
        run_tool([str(script)], timeout=0.3)
    assert time.monotonic() - started < 10
    time.sleep(2.0)
    assert not marker.exists()
    assert os.path.isfile(script)
