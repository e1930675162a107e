"""Whole-process command-line costs, side by side with the anchors' own binaries.

``python -m tools.benchmarks.startup --out bench --repeats 5``

Measures (median of ``--repeats`` fresh processes, wall clock): ``udic info`` on a
Kodak .udic, an argument error, ``udic decode`` of a 768×512 learned file and of a
lossless one, and ``dwebp``/``bpgdec``/``djxl`` on the same image where installed;
then a batch of Kodak decodes in one process (images per second).  Reported as
seconds and as ratios to the anchors, never asserted (issue 15's targets: info ≤ 0.2 s,
argument error ≤ 0.3 s, decode ≤ 1.0 s).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from udic.train.data import default_data_root

from .common import command_line, publish

UDIC = [sys.executable, "-m", "udic"]
HEVC_DECODE = "HEVC 4:4:4 decode (ffmpeg; bpgdec stand-in)"


def _time(cmd: list[str], repeats: int) -> tuple[float, int]:
    times, rc = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True)
        times.append(time.perf_counter() - t0)
        rc = proc.returncode
    return statistics.median(times), rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.benchmarks.startup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--image", default="kodim23.png")
    p.add_argument("--batch", type=int, default=24, help="Kodak images decoded in one process")
    p.add_argument("--note", default="")
    a = p.parse_args(argv)
    kodak = default_data_root() / "kodak"
    src = kodak / a.image
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="udic-startup-") as tmp:
        t = Path(tmp)
        subprocess.run([*UDIC, "encode", str(src), "-o", str(t / "k.udic"), "--effort", "0", "--quiet"], check=True)
        subprocess.run([*UDIC, "encode", str(src), "-o", str(t / "l.udic"), "--lossless", "--quiet"], check=True)
        cases = {
            "udic info": [*UDIC, "info", str(t / "k.udic")],
            "udic argument error (-q 90)": [*UDIC, "encode", str(src), "-o", str(t / "x.udic"), "-q", "90"],
            "udic decode (learned, 768x512)": [*UDIC, "decode", str(t / "k.udic"), "-o", str(t / "k.png"), "--force"],
            "udic decode (lossless, 768x512)": [*UDIC, "decode", str(t / "l.udic"), "-o", str(t / "l.png"), "--force"],
        }
        anchors = {}
        if shutil.which("cwebp") and shutil.which("dwebp"):
            subprocess.run(["cwebp", "-q", "75", str(src), "-o", str(t / "k.webp")], capture_output=True, check=True)
            anchors["dwebp"] = ["dwebp", str(t / "k.webp"), "-o", str(t / "w.png")]
        if shutil.which("bpgenc") and shutil.which("bpgdec"):
            subprocess.run(["bpgenc", "-o", str(t / "k.bpg"), str(src)], capture_output=True, check=True)
            anchors["bpgdec"] = ["bpgdec", "-o", str(t / "b.png"), str(t / "k.bpg")]
        elif shutil.which("ffmpeg"):
            # bpgdec's stand-in where BPG is not installed: the same HEVC 4:4:4 intra frame
            # (x265, as BPG makes it), decoded to PNG by ffmpeg.
            hevc = subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(src), "-c:v", "libx265",
                                   "-pix_fmt", "yuv444p", "-x265-params", "qp=29:log-level=error",
                                   str(t / "k.mkv")], capture_output=True)
            if hevc.returncode == 0:
                anchors[HEVC_DECODE] = ["ffmpeg", "-y", "-loglevel", "error", "-i", str(t / "k.mkv"),
                                        "-frames:v", "1", str(t / "h.png")]
        if shutil.which("cjxl") and shutil.which("djxl"):
            subprocess.run(["cjxl", str(src), str(t / "k.jxl"), "-q", "80"], capture_output=True, check=True)
            anchors["djxl"] = ["djxl", str(t / "k.jxl"), str(t / "j.png")]
        for name, cmd in {**cases, **anchors}.items():
            seconds, rc = _time(cmd, a.repeats)
            rows[name] = {"seconds": round(seconds, 3), "exit": rc}
        code = ("import sys, time, pathlib; from udic import api; fs=[pathlib.Path(p).read_bytes() for p in sys.argv[1:]];"
                "t0=time.perf_counter(); [api.decode(f, progress=False) for f in fs]; print(time.perf_counter()-t0)")
        files = []
        for i, img in enumerate(sorted(kodak.glob("*.png"))[: a.batch]):
            out = t / f"b{i}.udic"
            subprocess.run([*UDIC, "encode", str(img), "-o", str(out), "--effort", "0", "--quiet"], check=True)
            files.append(str(out))
        proc = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True, check=True)
        batch_s = float(proc.stdout.strip().splitlines()[-1])
    learned = rows["udic decode (learned, 768x512)"]["seconds"]
    lines = [
        "## Start-up and whole-process costs",
        "",
        f"Median of {a.repeats} fresh processes, wall clock{'; ' + a.note if a.note else ''}.",
        "",
        "| command | seconds | vs dwebp | vs bpgdec (or its HEVC stand-in) |",
        "|---|---|---|---|",
    ]
    bpg = "bpgdec" if "bpgdec" in rows else HEVC_DECODE
    for name, row in rows.items():
        ratios = [f"{row['seconds'] / rows[k]['seconds']:.1f}×" if k in rows else "—" for k in ("dwebp", bpg)]
        lines.append(f"| `{name}` | {row['seconds']:.3f} | {ratios[0]} | {ratios[1]} |")
    lines += ["", f"Batch: {len(files)} Kodak decodes in one process: {batch_s:.1f} s = "
                  f"{len(files) / batch_s:.2f} images/s (the learned decode alone, without the process start: "
                  f"{batch_s / len(files):.2f} s per image against {learned:.2f} s for a whole process).", "",
              f"Command: `{command_line(argv, 'tools.benchmarks.startup')}`"]
    data = {"rows": rows, "batch": {"images": len(files), "seconds": round(batch_s, 3)}, "note": a.note}
    return publish(a.out, "startup", data, "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
