"""Time-to-quality of long training runs, against the classic codecs.

``python -m tools.longrun --run runs/base-narrow --run docs/training/base-v1``

Reads each run's harness log (``eval_log.csv``: 6 fixed Kodak images, all rates,
bpp estimated from the likelihoods) and compares every evaluation with JPEG, WebP
and x265 4:4:4 (the BPG equivalent) on the *same six images*, taken from the RD
bench's anchor cache (``bench/anchors.json``: real files of those codecs).  The
report gives the BD-rate against each codec over training hours, the first hour
each target was met (beat JPEG, beat WebP, within +10 % of HEVC) and, for a target
not met, an extrapolation: BD-rate is close to linear in log(hours) late in a run,
so a line through the second half of the curve says when it would cross, if ever.
A run continued with warm restarts (``--cycle-from``) is extrapolated through the
end of each cycle instead (the decayed models, the ones worth keeping): the dip
while the learning rate is high again says nothing about where the run is going.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from udic.metrics import bd_rate
from udic.train.data import EVAL_KODAK

from .recipes import _read_eval

# (anchor, BD-rate a run must get below, what the target is called)
TARGETS = (("jpeg", 0.0, "beats JPEG"), ("webp", 0.0, "beats WebP"), ("hevc", 10.0, "within +10 % of HEVC"))


@dataclass(frozen=True)
class TargetResult:
    anchor: str
    goal: str
    met_at_hours: float | None  # first evaluation at or below the threshold
    extrapolated_hours: float | None  # where the late-run log-linear trend crosses it (None: never; NaN: too few points)
    last_bd: float


def anchor_curves(anchors_json: Path, images: tuple[str, ...] = EVAL_KODAK) -> dict[str, tuple[list[float], list[float]]]:
    """Mean (bpp, PSNR) per quality of every Kodak anchor over ``images`` (all must be present)."""
    entries = json.loads(anchors_json.read_text())["entries"]
    curves = {}
    names = {f"{n}.png" for n in images}
    for key, entry in entries.items():
        domain, codec = key.split("/", 1)
        if domain != "kodak":
            continue
        by_q: dict[float, list[dict]] = {}
        for p in entry["points"]:
            if p.get("ok", True) and Path(p["image"]).name in names:
                by_q.setdefault(float(p["quality"]), []).append(p)
        rows = [(float(np.mean([p["bpp"] for p in ps])), float(np.mean([p["psnr"] for p in ps])))
                for q, ps in sorted(by_q.items()) if len(ps) == len(names)]
        if len(rows) >= 2:
            curves[codec] = ([r[0] for r in rows], [r[1] for r in rows])
    return curves


def _logged_lr(run: Path) -> list[tuple[int, float]]:
    """(step, lr) rows of a run's train_log.csv; rows that do not parse are skipped."""
    rows = []
    with open(run / "train_log.csv") as f:
        for r in csv.DictReader(f):
            try:
                rows.append((int(r["step"]), float(r["lr"])))
            except (KeyError, TypeError, ValueError):
                continue
    return sorted(rows)


def cycle_ends(run: Path) -> set[int]:
    """Evaluation steps that end a learning-rate cycle (from the run's train_log.csv and
    config.json; empty when they are missing).

    An evaluation is *decayed* when the lr logged at it is within 2× the final rate and
    falling; consecutive decayed evaluations with no rise between them are one cycle's
    tail, whose last evaluation is the cycle's end.  A warm restart between two
    evaluations (a rise) starts a new tail even if no evaluation fell inside it.
    """
    try:
        lr_final = float(json.loads((run / "config.json").read_text())["lr_final"])
        logged = _logged_lr(run)
        steps = [e["step"] for e in _read_eval(run / "eval_log.csv")]
    except (OSError, KeyError, TypeError, ValueError):
        return set()
    ends: list[int] = []
    in_stretch = False
    previous_step = -1
    for step in steps:
        window = [lr for s, lr in logged if previous_step < s <= step]
        before = [lr for s, lr in logged if s <= previous_step][-1:]
        seq = before + window
        decayed = bool(window) and window[-1] <= 2 * lr_final and (len(seq) < 2 or seq[-1] <= seq[-2])
        # The same tail only if nothing in between rose or left it (else a restart came between).
        same_tail = (in_stretch and all(b <= a for a, b in zip(seq, seq[1:]))
                     and all(lr <= 2 * lr_final for lr in window))
        if decayed and same_tail:
            ends[-1] = step  # the same tail, later
        elif decayed:
            ends.append(step)
        in_stretch = decayed
        previous_step = step
    return set(ends)


def bd_over_time(eval_log: Path, anchors: dict[str, tuple[list[float], list[float]]],
                 ends: set[int] = frozenset()) -> list[dict]:
    """One row per evaluation: hours of training, BD-rate against each anchor, and
    whether it ends a learning-rate cycle."""
    rows = []
    for e in _read_eval(eval_log):
        row: dict[str, float] = {"step": e["step"], "hours": e["wall_s"] / 3600,
                                 "cycle_end": e["step"] in ends}
        for codec, (ab, ap) in anchors.items():
            try:
                row[codec] = bd_rate(ab, ap, e["bpp"], e["psnr"])
            except ValueError:
                row[codec] = math.nan
        rows.append(row)
    return rows


def crossing(rows: list[dict], anchor: str, threshold: float) -> tuple[float | None, float | None]:
    """(first hour at or below ``threshold``, hour the late trend reaches it or None)."""
    points = [(r["hours"], r[anchor]) for r in rows if r["hours"] > 0 and math.isfinite(r.get(anchor, math.nan))]
    met = next((h for h, bd in points if bd <= threshold), None)
    ends = [(r["hours"], r[anchor]) for r in rows
            if r.get("cycle_end") and r["hours"] > 0 and math.isfinite(r.get(anchor, math.nan))]
    if met is not None:
        return met, met
    if len(points) < 3 and len(ends) < 2:
        return None, math.nan  # too few evaluations for a trend
    if len(ends) >= 2:  # warm restarts: the trend of the decayed models
        late = ends
    else:
        late = [(h, bd) for h, bd in points if h >= points[-1][0] / 2] or points[-3:]
        if len(late) < 3:
            late = points[-3:]
    slope, intercept = np.polyfit([math.log(h) for h, _ in late], [bd for _, bd in late], 1)
    if slope >= 0:
        return None, None
    return None, float(math.exp((threshold - intercept) / slope))


def summarise(rows: list[dict]) -> list[TargetResult]:
    out = []
    for anchor, threshold, goal in TARGETS:
        if not rows or anchor not in rows[-1]:
            continue
        met, extrapolated = crossing(rows, anchor, threshold)
        out.append(TargetResult(anchor, goal, met, extrapolated, rows[-1][anchor]))
    return out


def _hours(h: float | None) -> str:
    if h is None:
        return "never (the trend is flat)"
    if math.isnan(h):
        return "too few evaluations"
    return f"{h:.2f} h" if h < 100 else f"{h:.0f} h"


def render(runs: dict[str, list[dict]], summaries: dict[str, list[TargetResult]], plot: str | None,
           command: str) -> str:
    lines = ["## Long training runs: time to beat the classic codecs", "",
             "Harness: the 6 fixed Kodak images, all rates, bpp *estimated* from the likelihoods, against real "
             "JPEG, WebP and x265 4:4:4 files of the same images (bench/anchors.json). Hours are training "
             "time (evaluation excluded). 'Extrapolated' fits BD-rate against log(hours) over the second "
             "half of the run, or, for a run continued with warm restarts, through the end of each "
             "learning-rate cycle (the decayed models).", "",
             "| run | hours | steps | BD vs JPEG | BD vs WebP | BD vs HEVC | target | met at | extrapolated |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in runs.items():
        last = rows[-1]
        for i, t in enumerate(summaries[name]):
            head = (f"| {name} | {last['hours']:.2f} | {last['step']} | {last.get('jpeg', math.nan):+.1f} % | "
                    f"{last.get('webp', math.nan):+.1f} % | {last.get('hevc', math.nan):+.1f} % |") if i == 0 \
                else "| | | | | | |"
            met = "–" if t.met_at_hours is None else f"{t.met_at_hours:.2f} h"
            ext = "–" if t.met_at_hours is not None else _hours(t.extrapolated_hours)
            lines.append(f"{head} {t.goal} | {met} | {ext} |")
    if plot:
        lines += ["", f"![long runs]({plot})"]
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .benchmarks.common import command_line, write_section

    p = argparse.ArgumentParser(prog="python -m tools.longrun", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", type=Path, required=True,
                   help="a run directory with eval_log.csv (repeatable); its name is the folder's")
    p.add_argument("--anchors", type=Path, default=Path("bench/anchors.json"))
    p.add_argument("--docs", type=Path, default=Path("docs/training/long"))
    p.add_argument("--bench", type=Path, default=Path("bench"))
    a = p.parse_args(argv)
    anchors = {k: v for k, v in anchor_curves(a.anchors).items() if k in {t[0] for t in TARGETS}}
    runs = {path.name: bd_over_time(path / "eval_log.csv", anchors, cycle_ends(path)) for path in a.run}
    summaries = {name: summarise(rows) for name, rows in runs.items()}
    a.docs.mkdir(parents=True, exist_ok=True)
    plot_name = None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(TARGETS), figsize=(5 * len(TARGETS), 3.8), sharey=False)
        for ax, (anchor, threshold, goal) in zip(axes, TARGETS):
            for name, rows in runs.items():
                pts = [(r["hours"], r[anchor]) for r in rows if r["hours"] > 0 and math.isfinite(r.get(anchor, math.nan))]
                ax.plot([h for h, _ in pts], [bd for _, bd in pts], marker=".", label=name)
            ax.axhline(threshold, color="grey", lw=0.7, ls="--")
            ax.set(xscale="log", xlabel="training hours (1 thread)", ylabel=f"BD-rate vs {anchor} (%)", title=goal)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(a.docs / "long.png", dpi=90)
        plt.close(fig)
        plot_name = "long.png"
    except ImportError:
        pass
    command = command_line(argv, "tools.longrun")
    data = {"runs": runs, "targets": {n: [asdict(t) for t in s] for n, s in summaries.items()}}
    (a.docs / "summary.json").write_text(json.dumps(data, indent=1) + "\n")
    md = render(runs, summaries, plot_name, command)
    (a.docs / "summary.md").write_text(md + "\n")
    link = None if plot_name is None else str(Path("..") / a.docs / plot_name)
    write_section(a.bench, "training", data, render(runs, summaries, link, command))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
