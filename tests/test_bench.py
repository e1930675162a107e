"""The benchmark writes its report (markdown + JSON) from real encodes, with cached anchors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
