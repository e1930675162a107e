"""Time udic's pixel coder (``udic.lossless``): encode and decode speed and bytes per domain.

Usage: taskset -c 1 python tools/lossless_speed.py [--images K] [--effort E] [--domains a,b]
       [--repeat R] [--json PATH] [--profile encode|decode] [--workers N]

Everything runs in one process (no subprocess per image), so the figures are the coder's own
CPU time (process_time; the fastest of R decodes).  With ``--workers N`` (N > 1, not pinned to
one core) the encoder forks up to N processes and the encode figure is wall time (perf_counter).
Every round trip is checked to be exact.  MP/s per domain = total megapixels / total seconds
over its images.
"""

from __future__ import annotations

import argparse
import cProfile
import glob
import json
import math
import os
import pstats
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the udic command sets it

import numpy as np  # noqa: E402

from udic import lossless  # noqa: E402
from udic.lossless import workers  # noqa: E402

# The sibling script's image sets and loader (both run as `python tools/<name>.py`).
from lossless_bench import DATA, DOMAINS, GRAY_DOMAINS, load


def files(domain: str, count: int) -> list[str]:
    return sorted(glob.glob(os.path.join(DATA, DOMAINS[domain], "*.png")))[:count]


def time_image(path: str, effort: int, repeat: int, gray: bool = False) -> dict:
    pixels = load(path, gray)
    clock = time.process_time if workers.workers() == 1 else time.perf_counter
    t0 = clock()
    payload = lossless.encode(pixels, 8, 0, effort)
    enc = clock() - t0
    dec = math.inf
    for _ in range(repeat):
        t0 = time.process_time()
        out = lossless.decode(payload)
        dec = min(dec, time.process_time() - t0)
    if not np.array_equal(out, pixels):
        raise SystemExit(f"{path}: lossless round trip is not exact")
    return {
        "file": os.path.basename(path),
        "megapixels": pixels.shape[0] * pixels.shape[1] / 1e6,
        "bytes": len(payload),
        "mode": lossless.describe(payload)["mode"],
        "encode_s": enc,
        "decode_s": dec,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3, help="first K images (sorted by name) per domain")
    ap.add_argument("--effort", type=int, default=1)
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--repeat", type=int, default=1, help="decodes per image (the fastest counts)")
    ap.add_argument("--json", help="write per-image and per-domain figures here")
    ap.add_argument("--profile", choices=("encode", "decode"),
                    help="cProfile that step on each selected image instead of timing")
    ap.add_argument("--workers", type=int, default=1, help="encoder processes (>1: encode speed in wall time)")
    args = ap.parse_args()
    workers.set_workers(args.workers)
    domains = args.domains.split(",")
    if args.profile:
        for domain in domains:
            for path in files(domain, args.images):
                pixels = load(path, domain in GRAY_DOMAINS)
                payload = lossless.encode(pixels, 8, 0, args.effort) if args.profile == "decode" else None
                prof = cProfile.Profile()
                prof.enable()
                if payload is None:
                    lossless.encode(pixels, 8, 0, args.effort)
                else:
                    lossless.decode(payload)
                prof.disable()
                print(f"== {args.profile} {path}")
                pstats.Stats(prof).sort_stats("tottime").print_stats(18)
        return
    report = {"effort": args.effort, "images": args.images, "domains": {}}
    print(f"{'domain':8} {'images':>6} {'MP':>6} {'bytes':>10} {'enc MP/s':>9} {'dec MP/s':>9}")
    for domain in domains:
        rows = [time_image(path, args.effort, args.repeat, domain in GRAY_DOMAINS) for path in files(domain, args.images)]
        mp = sum(r["megapixels"] for r in rows)
        total = sum(r["bytes"] for r in rows)
        enc = mp / sum(r["encode_s"] for r in rows)
        dec = mp / sum(r["decode_s"] for r in rows)
        gbytes = math.exp(np.mean([math.log(r["bytes"]) for r in rows]))
        report["domains"][domain] = {"rows": rows, "megapixels": mp, "bytes": total, "gmean_bytes": gbytes,
                                     "encode_mps": enc, "decode_mps": dec}
        print(f"{domain:8} {len(rows):6d} {mp:6.2f} {total:10d} {enc:9.2f} {dec:9.2f}")
        for r in rows:
            print(f"    {r['file']:40} {r['bytes']:9d} {r['mode']:15} "
                  f"enc {r['encode_s']:6.2f} s  dec {r['decode_s']:6.3f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
