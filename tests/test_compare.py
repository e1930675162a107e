"""Tests for udic.compare: averaging, BD tables, writers and both CLI modes (real codecs)."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from udic.anchors import get_codec
from udic.compare import (
    Curve,
    RDPoint,
    average_curves,
    bd_table,
    choose_anchor,
    collect_images,
    compare_files,
    parse_qualities,
)
from udic.cli import compare_command
from udic.effort import DEFAULT_EFFORT
from udic.errors import InputError, OutputError, UsageError


def _need(*names: str) -> None:
    for name in names:
        reason = get_codec(name).unavailable_reason()
        if reason:
            if os.environ.get("CI"):
                pytest.fail(f"{name}: {reason}")
            pytest.skip(f"{name}: {reason}")


def _make_image(path: Path, seed: int, h: int = 48, w: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 4.0 + seed * 9, y * 5.0, 128 + 60 * np.sin(x / (6.0 + seed) + y / 11.0)], axis=-1)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def _runner() -> CliRunner:
    return CliRunner()


# --------------------------------------------------------------------------- engine, pure


def _pt(codec: str, image: str, q: float, bpp: float, psnr: float, ms: float = 0.9, ok: bool = True,
        domain: str = "d") -> RDPoint:  # fmt: skip
    size = int(bpp * 100) if math.isfinite(bpp) else 0
    return RDPoint(codec, f"{image}.{q}", size, bpp, psnr, ms, image=image, domain=domain, quality=q, ok=ok)


def test_average_curves_means_per_quality() -> None:
    points = [
        _pt("jpeg", "a", 50, 1.0, 30.0, 0.90),
        _pt("jpeg", "b", 50, 2.0, 34.0, 0.96),
        _pt("jpeg", "a", 20, 0.4, 26.0, 0.80),
        _pt("jpeg", "b", 20, 0.6, 28.0, 0.84),
    ]
    curves, notes = average_curves(points)
    assert notes == []
    (c,) = curves
    assert c.qualities == [20, 50]  # sorted by rate
    assert c.bpp == pytest.approx([0.5, 1.5])
    assert c.psnr == pytest.approx([27.0, 32.0])
    assert c.ms_ssim == pytest.approx([0.82, 0.93])
    assert c.images == 2


def test_average_curves_drops_a_setting_that_failed_on_one_image() -> None:
    points = [
        _pt("webp", "a", 50, 1.0, 30.0),
        _pt("webp", "b", 50, math.nan, math.nan, ok=False),
        _pt("webp", "a", 80, 2.0, 35.0),
        _pt("webp", "b", 80, 2.2, 36.0),
    ]
    curves, notes = average_curves(points)
    assert curves[0].qualities == [80]
    assert curves[0].bpp == pytest.approx([2.1])
    assert len(notes) == 1 and "q=50" in notes[0] and "1/2" in notes[0]


def test_average_curves_names_the_cheapest_setting_lossless_on_every_image() -> None:
    """A setting exact on every image (PSNR ∞) has no place on a mean PSNR curve: the curve
    names its mean bpp instead; one exact on some images only is still left out."""
    points = [
        _pt("udic", "a", 3, 1.0, 30.0), _pt("udic", "b", 3, 2.0, 32.0),
        _pt("udic", "a", 8, 4.0, math.inf), _pt("udic", "b", 8, 6.0, 40.0),
        _pt("udic", "a", 9, 5.0, math.inf), _pt("udic", "b", 9, 7.0, math.inf),
        _pt("udic", "a", 10, 6.0, math.inf), _pt("udic", "b", 10, 8.0, math.inf),
    ]
    curves, notes = average_curves(points)
    (c,) = curves
    assert c.qualities == [3] and c.lossless_bpp == pytest.approx(6.0)
    assert len(notes) == 1 and "q=8" in notes[0]


def _curve(codec: str, scale: float = 1.0, n: int = 5, domain: str = "") -> Curve:
    bpp = [0.1 * 2**i * scale for i in range(n)]
    psnr = [28.0 + 2.5 * i for i in range(n)]
    return Curve(domain, codec, bpp, psnr, [math.nan] * n, [None] * n, images=1)


def test_choose_anchor_preference_and_request() -> None:
    assert choose_anchor(["jpeg", "bpg", "vvc", "webp"]) == "vvc"
    assert choose_anchor(["jpeg", "bpg", "webp"]) == "bpg"
    assert choose_anchor(["jpeg", "webp"]) == "jpeg"
    assert choose_anchor(["webp", "jxl"]) is None
    assert choose_anchor(["jpeg", "webp"], "WebP") == "webp"


def test_bd_table_against_anchor() -> None:
    curves = [_curve("jpeg"), _curve("webp", 0.9), _curve("avif", 0.5, n=3)]
    rows, anchors, notes = bd_table(curves)
    assert anchors == {"": "jpeg"}
    (row,) = rows
    assert row.codec == "webp" and row.bd_rate == pytest.approx(-10.0, abs=1e-9)
    assert any("avif" in n and "needs 4" in n for n in notes)
    rows, anchors, _ = bd_table(curves, "webp")
    assert anchors[""] == "webp"
    assert rows[0].codec == "jpeg" and rows[0].bd_rate == pytest.approx(100 / 0.9 - 100, abs=1e-9)


def test_bd_table_without_usable_anchor() -> None:
    rows, anchors, notes = bd_table([_curve("webp"), _curve("jxl")])
    assert rows == [] and anchors == {"": None}
    assert notes and "no anchor" in notes[0]


def test_collect_images_domains(tmp_path: Path) -> None:
    _make_image(tmp_path / "kodak" / "a.png", 1)
    _make_image(tmp_path / "kodak" / "b.png", 2)
    (tmp_path / "kodak" / "notes.txt").write_text("not an image")
    _make_image(tmp_path / "clic" / "c.png", 3)
    domains = collect_images([tmp_path / "kodak", tmp_path / "clic" / "c.png"])
    assert [(d, [p.name for p in imgs]) for d, imgs in domains] == [("kodak", ["a.png", "b.png"]), ("clic", ["c.png"])]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        collect_images([tmp_path / "empty"])


def test_parse_qualities() -> None:
    assert parse_qualities(["jpg=10,30", "x265=37"]) == {"jpeg": [10.0, 30.0], "hevc": [37.0]}
    for bad in ("jpeg", "jpeg=", "jpeg=a,b", "nope=1"):
        with pytest.raises(UsageError):
            parse_qualities([bad])


# --------------------------------------------------------------------------- files mode (real codecs)


@pytest.fixture
def encoded_set(tmp_path: Path) -> tuple[Path, list[Path]]:
    _need("jpeg", "webp")
    ref = _make_image(tmp_path / "ref.png", 0)
    files = []
    for name, qs in (("jpeg", (15, 35, 60, 85)), ("webp", (15, 35, 60, 85))):
        codec = get_codec(name)
        for q in qs:
            out = tmp_path / "files" / f"{name}_{q}{codec.suffixes[0]}"
            out.parent.mkdir(exist_ok=True)
            codec.encode(ref, out, q)
            files.append(out)
    return ref, files


def test_files_mode_table_bd_csv_json(encoded_set: tuple[Path, list[Path]], tmp_path: Path) -> None:
    ref, files = encoded_set
    broken = tmp_path / "files" / "broken.webp"
    broken.write_bytes(b"RIFF\x20\x00\x00\x00WEBPVP8 " + b"\x00" * 20)
    unknown = tmp_path / "files" / "mystery.bin"
    unknown.write_bytes(b"definitely not an image")
    out_csv, out_json = tmp_path / "r.csv", tmp_path / "r.json"
    args = [str(ref), *map(str, files), str(broken), str(unknown), "--csv", str(out_csv), "--json", str(out_json), "--quiet"]
    result = _runner().invoke(compare_command, args)
    # The table and both reports stand; the status says two points are missing.
    assert result.exit_code == 1 and isinstance(result.exception, InputError), result.output
    assert "2 of 10 points could not be measured" in str(result.exception)
    out = result.stdout
    assert "broken.webp" in out and "cannot decode" in out
    assert "mystery.bin" in out and "unrecognised format" in out
    assert "BD vs jpeg" in out
    assert any(line.startswith("webp ") and "%" in line for line in out.splitlines())

    data = json.loads(out_json.read_text())
    assert data["mode"] == "files" and data["anchors"] == {"": "jpeg"}
    assert len(data["points"]) == len(files) + 2
    good = [p for p in data["points"] if p["ok"]]
    assert len(good) == len(files)
    for p in good:
        assert p["bpp"] == pytest.approx(p["bytes"] * 8 / (64 * 48))
        assert 20 < p["psnr"] < 60 and 0 < p["ms_ssim"] <= 1
    bad = [p for p in data["points"] if not p["ok"]]
    assert all(p["psnr"] is None for p in bad)  # NaN written as null, not as invalid JSON
    (bd,) = data["bd"]
    assert bd["codec"] == "webp" and bd["anchor"] == "jpeg" and bd["points"] == 4
    assert bd["bd_rate"] is not None and -100 < bd["bd_rate"] < 100

    rows = list(csv.DictReader(out_csv.open()))
    assert sum(r["kind"] == "point" for r in rows) == len(files) + 2
    assert [r["codec"] for r in rows if r["kind"] == "bd"] == ["webp"]


def test_files_mode_anchor_option(encoded_set: tuple[Path, list[Path]]) -> None:
    ref, files = encoded_set
    result = _runner().invoke(compare_command, [str(ref), *map(str, files), "--anchor", "webp", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "BD vs webp" in result.stdout
    assert any(line.startswith("jpeg ") and "%" in line for line in result.stdout.splitlines())


def test_files_mode_all_undecodable_fails_after_printing(tmp_path: Path) -> None:
    ref = _make_image(tmp_path / "ref.png", 0)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff" + b"\x00" * 10)
    result = _runner().invoke(compare_command, [str(ref), str(junk), "--quiet"])
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError)
    assert "junk.jpg" in result.stdout and "cannot decode" in result.stdout


def test_files_mode_usage_errors(tmp_path: Path) -> None:
    ref = _make_image(tmp_path / "ref.png", 0)
    result = _runner().invoke(compare_command, [str(ref)])
    assert isinstance(result.exception, UsageError)
    result = _runner().invoke(compare_command, [str(ref), str(ref), "--anchor", "mpeg1"])
    assert isinstance(result.exception, UsageError)
    result = _runner().invoke(compare_command, ["--sweep", str(ref), "--codecs", "jpeg,nope"])
    assert isinstance(result.exception, UsageError)


def test_report_files_are_not_overwritten_without_force(encoded_set: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """--json/--csv name files: an existing one is kept unless --force, and a compared file is
    never one (a user who adds --json out of habit must not lose a compressed file)."""
    ref, files = encoded_set
    kept = tmp_path / "old.json"
    kept.write_bytes(b"precious")
    result = _runner().invoke(compare_command, [str(ref), *map(str, files), "--json", str(kept), "--quiet"])
    assert isinstance(result.exception, OutputError) and "exists (use --force" in str(result.exception)
    assert result.stdout == "" and kept.read_bytes() == b"precious"  # refused before any work
    victim = files[0]
    before = victim.read_bytes()
    for opt in ("--json", "--csv", "--plot"):
        result = _runner().invoke(compare_command, [str(ref), *map(str, files), opt, str(victim), "--force", "--quiet"])
        assert isinstance(result.exception, UsageError) and "one of the files to compare" in str(result.exception)
    assert victim.read_bytes() == before
    result = _runner().invoke(compare_command, [str(ref), *map(str, files), "--json", str(kept), "--force", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(kept.read_text())["mode"] == "files"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def test_size_mismatch_is_a_note(tmp_path: Path) -> None:
    _need("jpeg")
    ref = _make_image(tmp_path / "ref.png", 0)
    other = _make_image(tmp_path / "other.png", 1, h=40, w=64)
    jpg = tmp_path / "other.jpg"
    get_codec("jpeg").encode(other, jpg, 80)
    good = tmp_path / "good.jpg"
    get_codec("jpeg").encode(ref, good, 80)
    result = _runner().invoke(compare_command, [str(ref), str(jpg), str(good), "--quiet"])
    assert result.exit_code == 1 and "1 of 2 points" in str(result.exception), result.output
    assert "differs from the reference" in result.stdout and "36." in result.stdout  # the table stands


# --------------------------------------------------------------------------- sweep mode (real codecs)


def test_sweep_two_domains_parallel_with_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from udic import cli

    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)  # progress is for terminals only
    _need("jpeg", "webp")
    pytest.importorskip("matplotlib")
    _make_image(tmp_path / "photos" / "a.png", 1)
    _make_image(tmp_path / "photos" / "b.png", 2)
    _make_image(tmp_path / "screens" / "c.png", 3)
    out_json, plot = tmp_path / "s.json", tmp_path / "rd.svg"
    keep = tmp_path / "kept"
    args = [
        "--sweep", str(tmp_path / "photos"), str(tmp_path / "screens"),
        "--codecs", "jpeg,webp,bpg,vvc", "--qualities", "jpeg=20,40,60,85", "--qualities", "webp=20,40,60,85",
        "--jobs", "2", "--json", str(out_json), "--plot", str(plot), "--keep", str(keep),
    ]  # fmt: skip
    result = _runner().invoke(compare_command, args)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Domain photos (2 images" in out and "Domain screens (1 image;" in out
    assert out.count("BD vs jpeg") == 2
    assert "encoding" in result.stderr  # the progress bar goes to stderr
    for name, tools in (("bpg", "bpgenc"), ("vvc", "vvencapp")):
        if shutil.which(tools) is None:
            assert f"skipped {name}:" in out

    data = json.loads(out_json.read_text())
    photos_jpeg = [p for p in data["points"] if p["domain"] == "photos" and p["codec"] == "jpeg"]
    assert len(photos_jpeg) == 8 and all(p["ok"] for p in photos_jpeg)
    curve = next(c for c in data["curves"] if c["domain"] == "photos" and c["codec"] == "jpeg")
    by_q = {q: b for q, b in zip(curve["qualities"], curve["bpp"])}
    mean40 = np.mean([p["bpp"] for p in photos_jpeg if p["quality"] == 40])
    assert by_q[40] == pytest.approx(mean40)
    assert {(b["domain"], b["codec"]) for b in data["bd"]} == {("photos", "webp"), ("screens", "webp")}
    assert any("cwebp" in c or "WEBP" in c for c in data["commands"]["webp"]["encode"])

    assert plot.read_text().lstrip().startswith("<?xml") and "<svg" in plot.read_text()
    assert len(list((keep / "photos").glob("*.webp"))) == 8


def test_sweep_quiet_has_no_progress_and_only_skips_missing(tmp_path: Path) -> None:
    _need("jpeg")
    img = _make_image(tmp_path / "one" / "a.png", 4)
    result = _runner().invoke(
        compare_command, ["--sweep", str(img), "--codecs", "jpeg,udic", "--qualities", "jpeg=30,60", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "Domain one (1 image;" in result.stdout
    assert "no BD table" in result.stdout  # two points are not a curve
    try:
        import udic.api  # noqa: F401
    except Exception:  # noqa: BLE001
        assert "skipped udic: udic.api is not importable" in result.stdout


def test_udic_sweeps_at_the_encoders_default_effort_or_the_one_asked(tmp_path: Path) -> None:
    """A sweep measures what `udic encode` gives (effort 1 by default); --effort changes it."""
    from udic.anchors import UdicCodec
    from udic.effort import DEFAULT_EFFORT

    img = _make_image(tmp_path / "one" / "a.png", 4)
    try:
        for args, effort in (([], DEFAULT_EFFORT), (["--effort", "0"], 0)):
            result = _runner().invoke(compare_command, ["--sweep", str(img), "--codecs", "udic", "--qualities",
                                                        "udic=1,3", "--quiet", "--show-commands", *args])
            assert result.exit_code == 0, result.output
            assert f"effort={effort})" in result.stdout
    finally:
        UdicCodec.effort = DEFAULT_EFFORT
    result = _runner().invoke(compare_command, [str(img), str(img), "--effort", "2"])
    assert result.exit_code != 0 and "--effort only apply with --sweep" in str(result.exception)


def test_no_progress_text_on_a_non_terminal(encoded_set: tuple[Path, list[Path]]) -> None:
    """A log or a pipe gets the table, not a stray ``decoding`` label."""
    ref, files = encoded_set
    result = _runner().invoke(compare_command, [str(ref), *map(str, files)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_plot_titles_name_the_image_or_the_folder() -> None:
    from udic.compare import CompareResult, _plot_title

    one = RDPoint("jpeg", "a.jpg", 10, 0.1, 30.0, 0.9, image="/photos/kodim01.png", domain="photos")
    two = RDPoint("jpeg", "b.jpg", 10, 0.1, 30.0, 0.9, image="/photos/kodim02.png", domain="photos")
    sweep = CompareResult("sweep", [one], [], [], {})
    assert _plot_title(sweep, "photos") == "kodim01.png"
    assert _plot_title(CompareResult("sweep", [one, two], [], [], {}), "photos") == "photos (2 images)"
    assert _plot_title(CompareResult("files", [one], [], [], {}, reference="/x/ref.png"), "") == "ref.png"


def test_sweep_effort_is_a_parameter_not_process_state(tmp_path: Path) -> None:
    from udic.anchors import UdicCodec
    from udic.compare import _configured

    codec = _configured("udic", None, 0)
    assert codec.effort == 0 and UdicCodec.effort == DEFAULT_EFFORT


def test_files_mode_scores_plain_images_under_their_format(tmp_path: Path) -> None:
    """A PNG (from pngquant, another decoder, or the source itself) or a GIF is a file to score
    too: no adapter claims it, Pillow reads it, and its format names the row."""
    ref = _make_image(tmp_path / "ref.png", 0)
    rgb = np.asarray(Image.open(ref).convert("RGB"))
    copy = tmp_path / "copy.png"
    shutil.copyfile(ref, copy)
    shifted = tmp_path / "shifted.png"
    Image.fromarray(np.clip(rgb.astype(int) + 4, 0, 255).astype(np.uint8)).save(shifted)
    gif = tmp_path / "ref.gif"
    Image.open(ref).convert("RGB").save(gif)
    small = tmp_path / "small.png"
    Image.open(ref).resize((32, 24)).save(small)
    out_json = tmp_path / "r.json"
    result = _runner().invoke(compare_command, [str(ref), str(copy), str(shifted), str(gif), str(small),
                                                "--json", str(out_json), "--quiet"])
    assert result.exit_code == 1 and "1 of 4 points" in str(result.exception), result.output  # (small.png)
    points = {Path(p["file"]).name: p for p in json.loads(out_json.read_text())["points"]}
    assert points["copy.png"]["codec"] == "png" and points["copy.png"]["ok"]
    assert points["copy.png"]["psnr"] == "inf"  # lossless, written as `udic encode --json` writes it
    diff = np.clip(rgb.astype(int) + 4, 0, 255) - rgb.astype(int)
    expected = 10 * math.log10(255**2 / float(np.mean(diff.astype(float) ** 2)))
    assert points["shifted.png"]["psnr"] == pytest.approx(expected, abs=1e-9)
    assert points["ref.gif"]["codec"] == "gif" and points["ref.gif"]["ok"]
    assert not points["small.png"]["ok"] and "differs from the reference" in points["small.png"]["note"]
    assert "copy.png" in result.stdout and "inf" in result.stdout


def test_sixteen_bit_sources_are_scored_on_the_same_rounding(tmp_path: Path) -> None:
    """A lossless udic file of a 16-bit PNG scores as exact: the reference and the decoded file
    are both rounded to 8 bits as `udic encode` rounds (Pillow alone clips 16-bit gray to 255
    and truncates 16-bit colour)."""
    from udic import api
    from udic.imageio import load_image, save_wide_png

    rng = np.random.default_rng(3)
    for name, channels in (("g16", 1), ("rgb48", 3)):
        src = tmp_path / f"{name}.png"
        save_wide_png(rng.integers(0, 65536, (12, 10, channels), dtype=np.uint16), 16, str(src))
        enc = tmp_path / f"{name}.udic"
        enc.write_bytes(api.encode_pixels(load_image(src), 0).data)
        result = compare_files(src, [enc])
        (point,) = result.points
        assert point.ok and point.psnr == math.inf, point


def test_qualities_must_be_finite_and_are_taken_once() -> None:
    for bad in ("jpeg=nan", "jpeg=inf", "jpeg=1e400"):
        with pytest.raises(UsageError, match="finite"):
            parse_qualities([bad])
    assert parse_qualities(["jpeg=10,30,10"]) == {"jpeg": [10.0, 30.0]}


def test_report_names_are_checked_before_any_work(encoded_set: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """`--json` typed as a flag before the reference takes the reference's name: refused by its
    suffix, with --force too; two reports never share a file; --timeout is finite."""
    ref, files = encoded_set
    before = ref.read_bytes()
    result = _runner().invoke(compare_command, ["--json", str(ref), *map(str, files), "--force", "--quiet"])
    assert isinstance(result.exception, UsageError) and "must end in .json" in str(result.exception)
    assert ref.read_bytes() == before and result.stdout == ""
    same = tmp_path / "r.json"
    result = _runner().invoke(compare_command, [str(ref), *map(str, files), "--json", str(same), "--plot",
                                                str(same), "--quiet"])
    assert isinstance(result.exception, UsageError)
    result = _runner().invoke(compare_command, [str(ref), *map(str, files), "--csv", "-", "--json", "-"])
    assert isinstance(result.exception, UsageError) and "stdout" in str(result.exception)
    result = _runner().invoke(compare_command, [str(ref), *map(str, files), "--timeout", "nan"])
    assert isinstance(result.exception, UsageError) and "finite" in str(result.exception)
    assert not same.exists()


def test_json_on_stdout_is_json_only(encoded_set: tuple[Path, list[Path]]) -> None:
    ref, files = encoded_set
    result = _runner().invoke(compare_command, [str(ref), *map(str, files), "--json", "-", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] == "files"
    assert "BD vs jpeg" in result.stderr


def test_file_names_that_look_like_options_reach_the_tools_as_files(encoded_set: tuple[Path, list[Path]],
                                                                    tmp_path: Path, monkeypatch) -> None:
    ref, files = encoded_set
    webp = next(f for f in files if f.suffix == ".webp")
    odd = tmp_path / "-x.webp"
    shutil.copyfile(webp, odd)
    monkeypatch.chdir(tmp_path)
    result = compare_files(ref, [Path("-x.webp")])
    (point,) = result.points
    assert point.ok and point.codec == "webp" and 20 < point.psnr < 60, point


def test_a_decompression_bomb_is_one_line_not_an_unexpected_error(tmp_path: Path) -> None:
    """A 20,000 × 20,000 PNG of a few hundred bytes: as a reference, refused with its name; as a
    compared file, a failed point while the others are scored."""
    import zlib as _zlib

    from udic.png16 import _chunk  # type: ignore[attr-defined]

    side = 20_000
    raw = _zlib.compress(b"\0" * (side // 8 + 1) * side, 9)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0]))
                     + _chunk(b"IDAT", raw) + _chunk(b"IEND", b""))
    ref = _make_image(tmp_path / "ref.png", 0)
    result = _runner().invoke(compare_command, [str(bomb), str(ref), "--quiet"])
    assert isinstance(result.exception, InputError) and "bomb.png" in str(result.exception)
    result = _runner().invoke(compare_command, [str(ref), str(bomb), str(ref), "--quiet"])
    assert isinstance(result.exception, InputError) and "1 of 2 points" in str(result.exception)


def test_the_reference_is_read_upright(tmp_path: Path) -> None:
    """EXIF orientation is applied to the reference, as `udic encode` applies it to its input."""
    from udic import api
    from udic.imageio import load_image

    rgb = np.asarray(Image.open(_make_image(tmp_path / "base.png", 0)))
    exif = Image.Exif()
    exif[0x0112] = 6
    ref = tmp_path / "turned.png"
    Image.fromarray(rgb).save(ref, exif=exif)
    enc = tmp_path / "turned.udic"
    enc.write_bytes(api.encode_pixels(load_image(ref), 0).data)
    (point,) = compare_files(ref, [enc]).points
    assert point.ok and point.psnr == math.inf, point


def test_kept_files_are_not_overwritten_without_force(tmp_path: Path) -> None:
    """--keep never replaces a file unless --force; a file it could not keep leaves its
    measurement standing with a note."""
    _need("jpeg")
    img = _make_image(tmp_path / "in" / "a.png", 0)
    keep = tmp_path / "kept"
    args = ["--sweep", str(img), "--codecs", "jpeg", "--qualities", "jpeg=50", "--keep", str(keep), "--quiet"]
    first = _runner().invoke(compare_command, args)
    assert first.exit_code == 0, first.output
    (kept,) = (keep / "in").glob("*.jpg") if (keep / "in").exists() else keep.rglob("*.jpg")
    kept.write_bytes(b"precious")
    again = _runner().invoke(compare_command, [*args, "--json", "-"])
    assert again.exit_code == 0, again.output
    (point,) = json.loads(again.stdout)["points"]
    assert point["ok"] and "not kept" in point["note"] and kept.read_bytes() == b"precious"
    forced = _runner().invoke(compare_command, [*args, "--force"])
    assert forced.exit_code == 0 and kept.read_bytes()[:2] == b"\xff\xd8"


def test_an_unusable_keep_folder_fails_before_the_work(tmp_path: Path) -> None:
    img = _make_image(tmp_path / "a.png", 0)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    result = _runner().invoke(compare_command, ["--sweep", str(img), "--codecs", "jpeg", "--keep",
                                                str(blocker / "sub"), "--quiet"])
    assert isinstance(result.exception, OutputError) and "--keep" in str(result.exception)
    assert result.stdout == ""


def test_an_interrupted_comparison_kills_the_tools_still_running() -> None:
    """Tools run in their own sessions (so a timeout can kill a wrapper's children), which the
    terminal's Ctrl-C does not reach; the threads waiting for them get no KeyboardInterrupt.
    Whoever catches it kills them, or leaving the pool would wait for each (up to --timeout)."""
    import time

    from udic.anchors import run_tool
    from udic.compare import _run_all

    sleep = shutil.which("sleep")
    if sleep is None:
        pytest.skip("no sleep(1)")

    from udic import anchors

    def interrupt(label: str, done: int, total: int) -> None:
        until = time.monotonic() + 20
        while not anchors._RUNNING and time.monotonic() < until:  # the Ctrl-C lands while the tool runs
            time.sleep(0.01)
        raise KeyboardInterrupt

    tasks = [lambda: _pt("jpeg", "a", 1, 1.0, 30.0), lambda: run_tool([sleep, "60"]) or _pt("jpeg", "b", 1, 1.0, 30.0)]
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        _run_all(tasks, 2, interrupt, "encoding")
    assert time.monotonic() - started < 30


def test_allow_large_reads_a_reference_over_the_limit(tmp_path: Path, monkeypatch) -> None:
    from udic import imageio

    ref = _make_image(tmp_path / "ref.png", 0)
    copy = tmp_path / "copy.png"
    shutil.copyfile(ref, copy)
    monkeypatch.setattr(imageio, "DEFAULT_MAX_PIXELS", 1000)  # under the 64 × 48 reference
    result = _runner().invoke(compare_command, [str(ref), str(copy), "--quiet"])
    assert isinstance(result.exception, InputError) and "--allow-large" in str(result.exception)
    result = _runner().invoke(compare_command, [str(ref), str(copy), "--allow-large", "--quiet"])
    assert result.exit_code == 0, result.output
