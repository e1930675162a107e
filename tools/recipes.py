"""Training recipes compared by time-to-quality (issue: RD per CPU-hour).

``python -m tools.recipes run --minutes 10 --out runs/recipes``
``python -m tools.recipes report --runs runs/recipes``

Every variant changes one thing against the baseline (the base-v1 recipe) and trains
from scratch for the same number of minutes of training time (evaluation excluded)
with one torch thread on a core of its own (``taskset``), so each gets the same
compute.  Progress is read from the runs' own harness (``eval_log.csv``: 6 fixed Kodak
images, every rate, bpp *estimated* from the likelihoods, PSNR of the rounded
reconstruction) and summarised as BD-rate against JPEG on the same images and as
PSNR at 0.6 bpp, against training minutes.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from udic.metrics import Pchip, bd_rate

# name → (what changes, extra arguments of python -m udic.train)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("base-v1 recipe: KLT init, lr 3e-4 after 300 warm-up steps, batch 8, 128 px crops, "
                 "N=128/M=192, all 6 rates", []),
    "lr-1e-3": ("peak learning rate 1e-3", ["--lr", "1e-3"]),
    "random-init": ("block transform randomly initialised instead of the KLT", ["--init", "random"]),
    "crop-64": ("64 px crops (4× cheaper steps)", ["--crop", "64", "--big-crop", "64"]),
    "batch-16": ("batch 16", ["--batch", "16"]),
    "narrow": ("narrower model, N=64/M=128", ["--N", "64", "--M", "128"]),
}
COMMON = ["--steps", "1000000", "--eval-every", "300", "--threads", "1", "--ckpt-minutes", "3"]
MATCHED_BPP = 0.6


def run(out: Path, minutes: float, only: list[str]) -> None:
    for name, (_, extra) in VARIANTS.items():
        if only and name not in only:
            continue
        cmd = [sys.executable, "-m", "udic.train", "--out", str(out / name), *COMMON,
               "--time-limit-minutes", str(minutes), *extra]
        print("recipes:", " ".join(cmd[1:]), flush=True)
        with open(out / f"{name}.log", "a") as log:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)


def _read_eval(path: Path) -> list[dict]:
    by_step: dict[int, dict] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            entry = by_step.setdefault(int(row["step"]), {"step": int(row["step"]), "wall_s": float(row["wall_s"]),
                                                          "bpp": [], "psnr": []})
            entry["bpp"].append(float(row["bpp_estimate"]))
            entry["psnr"].append(float(row["psnr"]))
    return [by_step[k] for k in sorted(by_step)]


def psnr_at(bpp: list[float], psnr: list[float], target: float) -> float:
    order = np.argsort(bpp)
    lb = np.log10(np.asarray(bpp)[order])
    ps = np.asarray(psnr)[order]
    if not (lb[0] <= math.log10(target) <= lb[-1]) or np.any(np.diff(lb) <= 0):
        return math.nan
    return float(Pchip(lb, ps)(math.log10(target)))


def summarise(runs: Path, jpeg: list[dict]) -> dict[str, list[dict]]:
    out = {}
    jr, jp = [r["bpp"] for r in jpeg], [r["psnr"] for r in jpeg]
    for name in VARIANTS:
        path = runs / name / "eval_log.csv"
        if not path.exists():
            continue
        rows = []
        for e in _read_eval(path):
            try:
                bd = bd_rate(jr, jp, e["bpp"], e["psnr"])
            except ValueError:
                bd = math.nan
            rows.append({"step": e["step"], "minutes": e["wall_s"] / 60, "bd_vs_jpeg": bd,
                         "psnr_at_matched": psnr_at(e["bpp"], e["psnr"], MATCHED_BPP)})
        out[name] = rows
    return out


def report(runs: Path, docs: Path, bench: Path | None, command: str) -> str:
    from udic.train.data import EVAL_KODAK, default_data_root, load_rgb
    from udic.train.evaluate import jpeg_rd

    kodak = default_data_root() / "kodak"
    jpeg = jpeg_rd([load_rgb(kodak / f"{n}.png") for n in EVAL_KODAK])
    curves = summarise(runs, jpeg)
    docs.mkdir(parents=True, exist_ok=True)
    for name, rows in curves.items():
        with open(docs / f"{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    plot = docs / "recipes.png"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for name, rows in curves.items():
            m = [r["minutes"] for r in rows]
            axes[0].plot(m, [r["psnr_at_matched"] for r in rows], marker=".", label=name)
            axes[1].plot(m, [r["bd_vs_jpeg"] for r in rows], marker=".", label=name)
        axes[0].set(xlabel="training minutes (1 thread)", ylabel=f"PSNR at {MATCHED_BPP} bpp (dB)",
                    title="Kodak subset, bpp estimated")
        axes[1].set(xlabel="training minutes (1 thread)", ylabel="BD-rate vs JPEG (%)", title="lower is better")
        axes[1].axhline(0, color="grey", lw=0.5)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot, dpi=90)
        plt.close(fig)
    except ImportError:
        plot = None
    lines = ["## Training recipes: quality per CPU-minute", "",
             "Each variant changes one thing against the baseline and trains from scratch for the same "
             "training time (evaluation excluded) on one thread pinned to a core of its own, while the "
             "machine's other core did other work. "
             "Harness: 6 fixed Kodak images, all 6 rates, bpp *estimated* from the likelihoods; BD-rate against "
             f"JPEG on the same images; PSNR at {MATCHED_BPP} bpp interpolated over the rates.", "",
             "| variant | change | steps | s/step | minutes | PSNR @0.6 bpp | BD-rate vs JPEG |",
             "|---|---|---|---|---|---|---|"]
    for name, rows in curves.items():
        last = rows[-1]
        sps = last["minutes"] * 60 / max(last["step"], 1)
        lines.append(f"| {name} | {VARIANTS[name][0]} | {last['step']} | {sps:.2f} | {last['minutes']:.1f} | "
                     f"{last['psnr_at_matched']:.2f} | {last['bd_vs_jpeg']:+.1f} % |")
    tail = ["", f"Runs: `python -m tools.recipes run …`; summary: `{command}`."]
    md = "\n".join(lines + ([f"", f"![recipes]({plot.name})"] if plot else []) + tail)
    (docs / "summary.md").write_text(md + "\n")
    (docs / "summary.json").write_text(json.dumps(curves, indent=1) + "\n")
    if bench is not None:
        from .benchmarks.common import write_section

        # The bench report lives in bench/: link the plot from there.
        link = None if plot is None else plot if plot.is_absolute() else Path("..") / plot
        write_section(bench, "recipes", {"curves": curves},
                      "\n".join(lines + ([f"", f"![recipes]({link})"] if link else []) + tail))
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.recipes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train every variant for --minutes")
    r.add_argument("--out", type=Path, default=Path("runs/recipes"))
    r.add_argument("--minutes", type=float, default=10.0)
    r.add_argument("--only", default="", help="comma-separated variant names")
    s = sub.add_parser("report", help="curves, plot and table from the runs")
    s.add_argument("--runs", type=Path, default=Path("runs/recipes"))
    s.add_argument("--docs", type=Path, default=Path("docs/training/recipes"))
    s.add_argument("--bench", type=Path, default=Path("bench"))
    a = p.parse_args(argv)
    if a.cmd == "run":
        a.out.mkdir(parents=True, exist_ok=True)
        run(a.out, a.minutes, [x for x in a.only.split(",") if x])
    else:
        from .benchmarks.common import command_line

        print(report(a.runs, a.docs, a.bench, command_line(argv, "tools.recipes")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
