"""Hostile inputs and batches: a fuzz campaign's counts and batch throughput at --jobs 1 and 2.

``python -m tools.benchmarks.robustness --out bench --cases 2000 --images 12``

Both parts run ``python -m tools.fuzz`` (the same code as ``make fuzz``) in a child
process and read its JSON report.  Throughput uses Kodak images with udic's default
model, at effort 0 and at the CLI's default effort.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from udic.train.data import default_data_root, list_images

from .common import REPO_ROOT, command_line, publish


def _fuzz(args: list[str], out: Path) -> object:
    cmd = [sys.executable, "-m", "tools.fuzz", *args, "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    if not out.exists():
        raise SystemExit(f"tools.fuzz failed ({proc.returncode}): {proc.stderr[-500:]}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.benchmarks.robustness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench"))
    p.add_argument("--cases", type=int, default=2000)
    p.add_argument("--images", type=int, default=12, help="Kodak images per throughput batch")
    p.add_argument("--efforts", default="0,1", help="encode efforts to measure throughput at")
    p.add_argument("--parts", default="fuzz,throughput", help="which parts to (re)measure; the others are kept")
    a = p.parse_args(argv)
    parts = set(a.parts.split(","))
    previous = a.out / "sections" / "robustness.json"
    r: dict = json.loads(previous.read_text()) if previous.exists() else {}
    command = command_line(argv, "tools.benchmarks.robustness")
    with tempfile.TemporaryDirectory(prefix="udic-robust-") as tmp:
        tmpd = Path(tmp)
        if "fuzz" in parts:
            print(f"robustness: fuzzing {a.cases} cases", file=sys.stderr)
            r["fuzz"] = _fuzz(["--cases", str(a.cases)], tmpd / "fuzz.json")
            r["fuzz_command"] = command
        if "throughput" not in parts:
            return publish(a.out, "robustness", r, render(r))
        r["throughput_command"] = command
        images = tmpd / "images"
        images.mkdir()
        for path in list_images(default_data_root() / "kodak")[: a.images]:
            os.symlink(path.resolve(), images / path.name)
        r["throughput"] = {}
        for effort in a.efforts.split(","):
            print(f"robustness: batch throughput at effort {effort}", file=sys.stderr)
            r["throughput"][effort] = _fuzz(["--batch-throughput", "--image-dir", str(images), "--effort", effort],
                                            tmpd / f"tp{effort}.json")
    return publish(a.out, "robustness", r, render(r))


def render(r: dict) -> str:
    f = r["fuzz"]
    if "throughput" not in r:
        r = {**r, "throughput": {}}
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(f["outcomes"].items()))
    lines = ["## Hostile inputs and batches", "",
             f"**Fuzzing** (`python -m tools.fuzz`, the `make fuzz` campaign): {f['cases']:,} mutated, truncated, "
             f"spliced and extended files in {f['seconds']:.0f} s; outcomes: {outcomes}; "
             f"{f['past_crc']:,} got past the CRC (resealed); slowest case {f['slowest_case_s']:.2f} s; "
             f"**{f['bad']} failures** (a traceback, a hang over 10 s, or a wrong decode).", "",
             "**Batch throughput** (Kodak 768×512, one `udic` process per batch, 2 CPU threads split between "
             "the workers):", "",
             "| effort | command | --jobs | images | wall s | images / min | without start-up |",
             "|---|---|---|---|---|---|---|"]
    for effort, rows in r["throughput"].items():
        for row in rows:
            lines.append(f"| {effort} | {row['command']} | {row['jobs']} | {row['images']} | {row['wall_s']:.1f} | "
                         f"{row['per_min']:.1f} | {row['steady_per_min']:.1f} |")
    lines += ["", f"Commands: `{r.get('fuzz_command', '')}` (fuzzing), `{r.get('throughput_command', '–')}` (throughput)."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
