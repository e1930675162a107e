"""Long-run report: anchors on the harness images, first crossing, log-linear extrapolation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tools.longrun import anchor_curves, crossing, cycle_ends, summarise


def _rows(hours: list[float], bds: list[float], anchor: str = "webp") -> list[dict]:
    return [{"step": i, "hours": h, anchor: bd} for i, (h, bd) in enumerate(zip(hours, bds))]


def test_first_evaluation_below_the_threshold_is_when_it_was_met() -> None:
    assert crossing(_rows([0.5, 1.0, 2.0], [12.0, -1.0, -3.0]), "webp", 0.0) == (1.0, 1.0)


def test_extrapolation_is_log_linear_in_hours() -> None:
    # BD = 40 − (10/ln 2)·ln h: 30 % at 2 h, 20 % at 4 h, 10 % at 8 h → 0 % at 16 h.
    met, extrapolated = crossing(_rows([2.0, 4.0, 8.0], [30.0, 20.0, 10.0]), "webp", 0.0)
    assert met is None
    assert extrapolated == pytest.approx(16.0, rel=1e-9)


def test_a_flat_or_rising_trend_never_crosses() -> None:
    assert crossing(_rows([1.0, 2.0, 4.0], [20.0, 20.0, 21.0]), "webp", 0.0) == (None, None)


def test_summary_reports_each_anchor_present() -> None:
    rows = [{"step": 1, "hours": 1.0, "jpeg": -5.0, "webp": 30.0}]
    results = {r.anchor: r for r in summarise(rows)}
    assert set(results) == {"jpeg", "webp"}
    assert results["jpeg"].met_at_hours == 1.0 and results["webp"].met_at_hours is None
    assert results["webp"].last_bd == 30.0


def test_anchor_curves_average_the_harness_images_per_quality(tmp_path: Path) -> None:
    points = []
    for q, (b1, p1, b2, p2) in {10.0: (0.2, 28.0, 0.4, 30.0), 50.0: (0.8, 33.0, 1.0, 35.0)}.items():
        points += [{"image": "/x/kodim01.png", "quality": q, "bpp": b1, "psnr": p1},
                   {"image": "/x/kodim04.png", "quality": q, "bpp": b2, "psnr": p2},
                   {"image": "/x/kodim02.png", "quality": q, "bpp": 9.0, "psnr": 99.0}]  # not in the set
    path = tmp_path / "anchors.json"
    path.write_text(json.dumps({"entries": {"kodak/jpeg": {"points": points},
                                            "comic/jpeg": {"points": points}}}))
    curves = anchor_curves(path, images=("kodim01", "kodim04"))
    assert list(curves) == ["jpeg"]
    bpp, psnr = curves["jpeg"]
    assert bpp == pytest.approx([0.3, 0.9]) and psnr == pytest.approx([29.0, 34.0])
    assert all(math.isfinite(v) for v in bpp + psnr)


def test_warm_restarts_extrapolate_through_the_cycle_ends() -> None:
    # Cycle ends at 1 h (+40 %) and 4 h (+20 %); the restart's dip at 2 h (+50 %) is ignored:
    # 10 % per doubling → 0 % at 16 h.
    rows = _rows([0.5, 1.0, 2.0, 4.0], [60.0, 40.0, 50.0, 20.0])
    rows[1]["cycle_end"] = rows[3]["cycle_end"] = True
    met, extrapolated = crossing(rows, "webp", 0.0)
    assert met is None
    assert extrapolated == pytest.approx(16.0, rel=1e-9)


def test_cycle_ends_come_from_the_logged_learning_rate(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"lr_final": 3e-5}))
    lrs = {50: 1e-4, 1000: 3e-4, 1950: 5e-5, 2000: 3e-5, 2050: 6e-5, 3000: 3e-4, 3950: 4e-5, 4000: 3.5e-5}
    (run / "train_log.csv").write_text("step,lr\n" + "".join(f"{s},{lr}\n" for s, lr in lrs.items()))
    evals = "step,wall_s,rate,lambda,bpp_estimate,psnr\n" + "".join(
        f"{s},{s},0,0.01,0.5,30\n" for s in (0, 1000, 2000, 3000, 4000))
    (run / "eval_log.csv").write_text(evals)
    # 2000: decayed (first cycle's end); 4000: the second's end, stopped at 1.2× lr_final.
    assert cycle_ends(run) == {2000, 4000}
    assert cycle_ends(tmp_path / "missing") == set()


def test_a_restart_between_two_evaluations_still_ends_the_cycle(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"lr_final": 3e-5}))
    # Cycle 1 decays by 2000; cycle 2 (warm-up, plateau, decay) lies wholly between two evaluations.
    lrs = {1000: 3e-4, 1950: 4e-5, 2000: 3e-5, 2200: 3e-4, 2800: 5e-5, 3000: 3e-5, "x": "bad"}
    (run / "train_log.csv").write_text("step,lr\n" + "".join(f"{s},{lr}\n" for s, lr in lrs.items()) + "4000\n")
    (run / "eval_log.csv").write_text("step,wall_s,rate,lambda,bpp_estimate,psnr\n" + "".join(
        f"{s},{s},0,0.01,0.5,30\n" for s in (1000, 2000, 3000)))
    assert cycle_ends(run) == {2000, 3000}


def test_too_few_evaluations_give_no_trend() -> None:
    met, extrapolated = crossing(_rows([1.0, 2.0], [30.0, 20.0]), "webp", 0.0)
    assert met is None and math.isnan(extrapolated)
