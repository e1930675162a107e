"""The benchmark writes its report (markdown + JSON) from real encodes, with cached anchors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools import bench
from udic import api


def _data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    rng = np.random.default_rng(3)
    for folder in ("kodak", "ood/comic"):
        d = root / folder
        d.mkdir(parents=True)
        for i in range(2):
            yy, xx = np.mgrid[0:48, 0:64]
            img = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) + rng.normal(0, 6, (48, 64, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"img{i}.png")
    return root


def test_bench_writes_report_and_reuses_anchor_cache(tmp_path: Path, tiny_cache, monkeypatch) -> None:
    api._codecs.clear()
    root = _data_root(tmp_path)
    out = tmp_path / "bench"
    args = ["--out", str(out), "--data", str(root), "--domains", "kodak,comic", "--codecs", "jpeg",
            "--qualities", "0,2,4,5", "--model", tiny_cache.id, "--jobs", "1", "--threads", "1", "--quiet"]
    assert bench.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    rows = report["per_rate"]["kodak"]
    # Effort 0 and the default effort, each a curve of its own.
    assert [(r["effort"], r["quality"]) for r in rows] == [(e, q) for e in (0, 1) for q in (0.0, 2.0, 4.0, 5.0)]
    assert all(r["bpp"] > 0 and r["decode_s"] > 0 and r["encode_s"] > 0 for r in rows)
    assert rows[3]["bpp"] > rows[0]["bpp"]
    assert {c["codec"] for c in report["curves"]} == {"jpeg", "udic", "udic-e1"}
    assert set(report["images"]) == {"kodak", "comic"}
    md = (out / "report.md").read_text()
    assert "## kodak (2 images): udic per rate" in md and "## comic (2 images)" in md
    cache = json.loads((out / "anchors.json").read_text())["entries"]
    assert set(cache) == {"kodak/jpeg", "comic/jpeg"}
    # A second run must not re-encode the anchors: poison the sweep and rerun.
    monkeypatch.setattr(bench, "run_sweep", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-ran")))
    assert bench.main(args) == 0


def test_summary_table_of_udic_against_each_anchor() -> None:
    from tools.bench import udic_against_anchors

    jpeg = {"domain": "kodak", "codec": "jpeg", "bpp": [0.25, 0.5, 1.0, 2.0], "psnr": [26.0, 28.0, 30.0, 32.0]}
    udic = {"domain": "kodak", "codec": "udic", "bpp": [0.125, 0.25, 0.5, 1.0], "psnr": [26.0, 28.0, 30.0, 32.0]}
    adaptive = {**udic, "codec": "udic-e1", "bpp": [0.0625, 0.125, 0.25, 0.5]}
    lines = udic_against_anchors([jpeg, adaptive, udic, {**udic, "domain": "comic"}])
    assert "| domain | udic | jpeg |" in lines
    assert lines.index("| kodak | udic | -50.0 % |") + 1 == lines.index("| kodak | udic-e1 | -75.0 % |")
    assert "| comic | udic | – |" in lines  # no JPEG curve on that domain
    assert udic_against_anchors([jpeg]) == []


def test_report_says_how_the_model_was_trained() -> None:
    from tools.bench import _training_summary

    assert _training_summary({}) == ""
    assert _training_summary({"steps": 900, "wall_seconds": 7200}) == ", trained 900 steps in 2.00 h on this CPU"
    family = {"base_model": "ab" * 8, "loram": {"steps_per_rate": 1000, "rates": [0, 5],
                                                "wall_per_rate": {"r0": 1800.0, "r5": 1800.0}}}
    assert _training_summary(family) == (", per-rate deltas trained 2000 steps in 1.00 h on base "
                                         "`abababababababab` (docs/training.md)")


def test_log_rate_at_interpolates_between_the_points_around_the_target() -> None:
    from tools.bench import log_rate_at

    bpp, psnr = [0.25, 0.5, 1.0], [28.0, 30.0, 34.0]
    assert 10 ** log_rate_at(bpp, psnr, 32.0) == pytest.approx(0.5**0.5)  # halfway from 0.5 to 1.0 in log-rate
    assert 10 ** log_rate_at(bpp, psnr, 28.0) == pytest.approx(0.25)
    assert log_rate_at(bpp, psnr, 34.5) is None and log_rate_at(bpp, psnr, 27.9) is None
    # A point that costs more than another yet gives less PSNR is never the way to a quality.
    assert 10 ** log_rate_at([0.25, 0.4, 0.5, 1.0], [28.0, 27.0, 30.0, 34.0], 29.0) == pytest.approx(0.125**0.5)
    assert 10 ** log_rate_at([0.25, 0.4, 0.5], [28.0, 31.0, 30.0], 30.5) == pytest.approx(
        10 ** ((math.log10(0.25) + 5 * math.log10(0.4)) / 6))


def test_equal_psnr_ratios_hand_computed() -> None:
    from tools.bench import equal_psnr_lines, equal_psnr_table

    udic = {"domain": "kodak", "codec": "udic", "bpp": [0.2, 0.4, 0.8], "psnr": [30.0, 34.0, 38.0]}
    avif = {"domain": "kodak", "codec": "avif", "bpp": [0.4, 1.0], "psnr": [30.0, 36.0], "images": 24}
    # BPG on a 6-image subset pairs with udic's curve on the same images, not with the full one.
    subset = "6 images: a, b"
    udic6 = {**udic, "bpp": [0.1, 0.2, 0.4], "subset": subset}
    bpg = {"domain": "kodak", "codec": "bpg", "bpp": [0.1, 0.8], "psnr": [30.0, 42.0], "subset": subset}
    rows = equal_psnr_table([udic, avif, bpg, udic6])
    by_anchor = {r["anchor"]: r for r in rows}
    assert set(by_anchor) == {"avif", "bpg"}
    a = by_anchor["avif"]["ratios"]
    assert a[0] == pytest.approx(0.5)  # 30 dB: 0.2 / 0.4
    assert a[1] == pytest.approx(0.4 / 0.4 ** (1 / 3))  # 34 dB: avif at 0.4^(1/3)·1.0^(2/3)
    assert a[2:] == [None, None]  # avif stops at 36 dB, udic at 38 dB
    b = by_anchor["bpg"]["ratios"]
    assert b[0] == pytest.approx(1.0)  # 30 dB: 0.1 / 0.1
    assert b[1] == pytest.approx(0.2 / 0.8 ** (1 / 3) / 0.1 ** (2 / 3))  # bpg a third of the way in log-rate
    assert b[3] is None  # bpg reaches 42 dB, udic does not
    assert by_anchor["avif"]["udic_top_psnr"] == 38.0
    lines = equal_psnr_lines(rows)
    assert "| kodak | udic | 38.00 | avif | 36.00 | 0.50 | 0.54 | — | — |" in lines
    assert any(line.startswith("| kodak | udic | 38.00 | bpg (6 images) |") for line in lines)
    # A curve that becomes lossless says at which bpp.
    lossless = equal_psnr_lines(equal_psnr_table([{**udic, "lossless_bpp": 3.25}, avif]))
    assert any(line.startswith("| kodak | udic | 38.00, lossless at 3.25 bpp | avif |") for line in lossless)


def test_external_anchor_curves_average_each_qp_over_the_images(tmp_path: Path) -> None:
    from tools.bench import external_anchor_curves

    rows = [{"codec": "bpg444", "image": f"shared/data/kodak/{im}.png", "q": q, "bpp": bpp, "psnr_rgb": p}
            for im, q, bpp, p in [("kodim01", 22, 2.0, 40.0), ("kodim04", 22, 1.0, 42.0),
                                  ("kodim01", 27, 1.0, 36.0), ("kodim04", 27, 0.5, 38.0),
                                  ("kodim01", 32, 0.5, 33.0)]]  # q 32 misses kodim04
    (tmp_path / "k_bpg.json").write_text(json.dumps({"results": rows}))
    (tmp_path / "broken.json").write_text("{}")
    curves, notes = external_anchor_curves(tmp_path)
    assert len(curves) == 1
    c = curves[0]
    assert (c["codec"], c["bpp"], c["psnr"], c["image_names"]) == ("bpg", [0.75, 1.5], [37.0, 41.0],
                                                                   ["kodim01", "kodim04"])
    assert any("q=32 left out" in n for n in notes) and any("broken.json" in n for n in notes)


def test_bytes_to_reach_reads_each_image_off_its_own_curve() -> None:
    from tools.equal_quality import bytes_to_reach

    files = [(1000.0, 30.0), (4000.0, 34.0), (3000.0, 29.0)]  # the 3000-byte file is never the way
    assert bytes_to_reach(files, 32.0) == pytest.approx(2000.0)  # halfway in log-bytes
    assert bytes_to_reach(files, 25.0) == 1000.0  # the cheapest file already reaches it
    assert bytes_to_reach(files, 34.5) is None
    # A lossless file reaches every target, at its own bytes: no interpolation up to it.
    assert bytes_to_reach(files + [(9000.0, math.inf)], 50.0) == 9000.0
    assert bytes_to_reach(files + [(9000.0, math.inf)], 33.0) == pytest.approx(10 ** ((math.log10(1000) + 3 * math.log10(4000)) / 4))
    assert bytes_to_reach([], 30.0) is None


def test_per_image_table_counts_lossless_files_and_averages_ratios_geometrically() -> None:
    from tools.equal_quality import per_image_lines, per_image_table

    def pts(codec: str, image: str, files: list[tuple[float, float]], domain: str = "comic") -> list[dict]:
        return [{"domain": domain, "codec": codec, "image": f"/tmp/x/{image}", "bytes": b, "psnr": q} for b, q in files]

    points = (pts("udic-e1", "a.png", [(100, 28.0), (500, math.inf)])  # jumps to lossless
              + pts("udic-e1", "b.png", [(200, 30.0), (800, 40.0)])
              + pts("webp", "a.png", [(200, 30.0), (2000, 45.0)])
              + pts("webp", "b.png", [(100, 30.0), (400, 40.0)])
              + pts("webp", "c.png", [(100, 30.0)])  # udic has no file for c: left out
              + [{"domain": "comic", "codec": "webp", "image": "b.png", "bytes": 1, "psnr": 50.0, "ok": False}])
    (row,) = per_image_table(points, ("avif", "webp"), (30.0, 42.0))
    assert (row["domain"], row["udic"], row["anchor"], row["images"]) == ("comic", "udic-e1", "webp", 2)
    at30, at42 = row["cells"]
    assert at30["ratio"] == pytest.approx(math.sqrt(500 / 200 * 200 / 100))  # a: lossless 500 vs 200; b: 200 vs 100
    assert at30["both"] == 2
    # 42 dB: udic reaches it on a (lossless) only; webp on a only (b's failed file does not count)
    assert at42["udic_reaches"] == 1 and at42["anchor_reaches"] == 1 and at42["both"] == 1
    assert at42["ratio"] == pytest.approx(500 / (10 ** ((3 * math.log10(200) + 12 * math.log10(2000)) / 15)))
    lines = per_image_lines([row])
    assert lines[0].startswith("## Bytes at equal PSNR, image by image")
    assert f"| comic | udic-e1 | webp | {at30['ratio']:.2f} · 2/2 | {at42['ratio']:.2f} · 1/2 (1, 1) |" in lines


def test_bench_codes_each_image_with_the_model_udic_encode_would_choose(monkeypatch) -> None:
    from udic import modelchoice
    from udic.imageio import LoadedImage

    asked: list[str | None] = []
    monkeypatch.setattr(bench.api, "get_codec", lambda model, *_, **__: asked.append(model) or model)
    monkeypatch.setattr(modelchoice, "SYNTHETIC_MODEL", "synthetic-art-model")
    flat = np.zeros((32, 32, 3), np.uint8)
    flat[:, 16:] = 200
    noisy = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)

    def loaded(rgb: np.ndarray) -> LoadedImage:
        return LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None)

    bench.api.codec_for(loaded(flat), None, 1)  # flat art: the content choice
    bench.api.codec_for(loaded(noisy), None, 1)  # photo-like: the default
    bench.api.codec_for(loaded(flat), None, 0)  # effort 0 chooses nothing
    bench.api.codec_for(loaded(flat), "named", 1)  # a named model is kept
    assert asked == ["synthetic-art-model", None, None, "named"]


def test_cached_anchors_fall_back_to_the_repositorys_curves(tmp_path: Path, tiny_cache, monkeypatch) -> None:
    """--cached-anchors with an --out that has no cache reads bench/anchors.json (the committed
    curves), instead of noting every anchor as "not measured yet"."""
    api._codecs.clear()
    root = _data_root(tmp_path)
    first = tmp_path / "first"
    args = ["--data", str(root), "--domains", "comic", "--codecs", "jpeg", "--qualities", "2", "--efforts", "0",
            "--model", tiny_cache.id, "--jobs", "1", "--threads", "1", "--quiet"]
    assert bench.main(["--out", str(first), *args]) == 0
    monkeypatch.setattr(bench, "REPO_ANCHORS", first / "anchors.json")
    monkeypatch.setattr(bench, "run_sweep", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-ran")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert bench.main(["--out", str(elsewhere), "--cached-anchors", *args]) == 0
    report = json.loads((elsewhere / "report.json").read_text())
    assert not any("not measured yet" in n for n in report["notes"])
    assert any(p["codec"] == "jpeg" for p in report["points"])
