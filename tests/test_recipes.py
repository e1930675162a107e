"""The recipe harness: reading eval logs, matched-bpp PSNR, BD-rate against JPEG."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from tools.recipes import MATCHED_BPP, VARIANTS, psnr_at, summarise


def write_eval(path: Path, points: dict[int, list[tuple[float, float]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "wall_s", "rate", "lambda", "bpp_estimate", "psnr"])
        for step, pts in points.items():
            for rate, (bpp, psnr) in enumerate(pts):
                w.writerow([step, step * 0.5, rate, 0.01, bpp, psnr])


def test_psnr_at_interpolates_in_log_rate() -> None:
    bpp = [0.25, 0.5, 1.0, 2.0]
    psnr = [28.0, 30.0, 32.0, 34.0]  # exactly linear in log2(bpp)
    assert psnr_at(bpp, psnr, 0.5) == pytest.approx(30.0)
    assert psnr_at(bpp, psnr, math.sqrt(0.5)) == pytest.approx(31.0, abs=1e-9)
    assert math.isnan(psnr_at(bpp, psnr, 3.0))  # outside the curve: no extrapolation


def test_summarise_reads_every_eval(tmp_path: Path) -> None:
    jpeg = [{"bpp": b, "psnr": p} for b, p in [(0.25, 26.0), (0.5, 28.0), (1.0, 30.0), (2.0, 32.0)]]
    same = [(0.25, 26.0), (0.5, 28.0), (1.0, 30.0), (2.0, 32.0)]
    better = [(b / 2, p) for b, p in same]  # half the bits at every PSNR
    write_eval(tmp_path / "baseline" / "eval_log.csv", {0: same, 300: better})
    curves = summarise(tmp_path, jpeg)
    assert list(curves) == ["baseline"]
    first, last = curves["baseline"]
    assert first["step"] == 0 and last["step"] == 300 and last["minutes"] == pytest.approx(150 / 60)
    assert first["bd_vs_jpeg"] == pytest.approx(0.0, abs=1e-6)
    assert last["bd_vs_jpeg"] == pytest.approx(-50.0, abs=1e-6)
    assert last["psnr_at_matched"] > first["psnr_at_matched"]
    assert MATCHED_BPP == 0.6 and "baseline" in VARIANTS and len(VARIANTS) >= 6
