"""Benchmark udic's lossless coder against lossless WebP and cjxl, per image domain.

Usage: python tools/lossless_bench.py [--max-images K] [--near-images N] [--effort E] [--json PATH]
The size targets are per domain, so ``make bench`` measures every image of each set
(``--max-images 40``) and the near-lossless rows, four more encodes per image, on the first
``--near-images`` of them.  Speeds: megapixels per CPU-second of a serial encode and decode
(``workers`` 1), and, where the process may run on two CPUs or more, megapixels per second of
wall time of an encode with two processes (the encoder's own choice on a 2-core machine), whose
payload must equal the serial one.  Pinned to one core (taskset -c 1), only the first two.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import math
import os
import shutil
import subprocess
import tempfile
import time

# One BLAS thread, as the udic command sets it: numpy's OpenBLAS threads spin on the second core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from udic import lossless  # noqa: E402
from udic.lossless import workers  # noqa: E402

# ../shared/data next to the checkout (as udic.train.data finds it, without importing torch), or UDIC_DATA
DATA = os.environ.get("UDIC_DATA") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
DOMAINS = {
    "kodak": "kodak",
    "comic": "ood/comic",
    "line": "ood/line",
    "vector": "ood/vector",
    "screen": "ood/screen",
    "pixel": "ood/pixel",
    "kodak-gray": "kodak",  # the photos as black-and-white (8-bit gray): a domain of its own for the pixel coder
}
GRAY_DOMAINS = {"kodak-gray"}
NEAR = (1, 2, 4, 8)


def load(path: str, gray: bool = False) -> np.ndarray:
    im = Image.open(path)
    if gray:
        return np.asarray(im.convert("L"))[:, :, None]
    im = im.convert("RGBA" if ("A" in im.getbands() or "transparency" in im.info) else "RGB")
    return np.asarray(im)


def _image(pixels: np.ndarray) -> Image.Image:
    """The anchors' input: a gray image as mode L (one plane for them too)."""
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def webp_bytes(pixels: np.ndarray) -> int:
    buf = io.BytesIO()
    _image(pixels).save(buf, "WEBP", lossless=True, method=6, quality=100)
    return len(buf.getvalue())


def cjxl_bytes(pixels: np.ndarray) -> int | None:
    exe = shutil.which("cjxl")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.png"), os.path.join(tmp, "out.jxl")
        _image(pixels).save(src)
        subprocess.run([exe, src, dst, "-d", "0", "-e", "7"], check=True, capture_output=True)
        return os.path.getsize(dst)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def gmean(values: list[float]) -> float:
    return float(math.exp(np.mean(np.log(values)))) if values else float("nan")


def bench_image(path: str, effort: int, near: bool, gray: bool = False) -> dict:
    pixels = load(path, gray)
    mp = pixels.shape[0] * pixels.shape[1] / 1e6
    workers.set_workers(1)
    t0 = time.process_time()
    payload = lossless.encode(pixels, 8, 0, effort)
    t1 = time.process_time()
    out = lossless.decode(payload)
    t2 = time.process_time()
    if not np.array_equal(out, pixels):
        raise SystemExit(f"{path}: lossless round trip is not exact")
    wall = None
    if workers.cpus() >= 2:
        workers.set_workers(2)
        w0 = time.perf_counter()
        if lossless.encode(pixels, 8, 0, effort) != payload:
            raise SystemExit(f"{path}: the 2-process encoder's payload differs from the serial one")
        wall = time.perf_counter() - w0
        workers.set_workers(1)
    row = {
        "file": os.path.basename(path),
        "megapixels": mp,
        "udic": len(payload),
        "mode": lossless.describe(payload)["mode"],
        "webp": webp_bytes(pixels),
        "cjxl": cjxl_bytes(pixels),
        "encode_mps": mp / (t1 - t0),
        "decode_mps": mp / (t2 - t1),
        "encode_wall_mps_2": None if wall is None else mp / wall,
    }
    if near:
        for n in NEAR:
            p = lossless.encode(pixels, 8, n, effort)
            rec = lossless.decode(p)
            row[f"near{n}_bytes"] = len(p)
            row[f"near{n}_psnr"] = psnr(rec[:, :, :3], pixels[:, :, :3])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-images", type=int, default=4)
    ap.add_argument("--effort", type=int, default=1)
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--no-near", action="store_true", help="skip the near-lossless rows")
    ap.add_argument("--near-images", type=int, default=None,
                    help="near-lossless rows on the first N images of each set (default: all measured)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    results: dict[str, dict] = {}
    has_jxl = shutil.which("cjxl") is not None
    # A section of bench/report.md (tools.bench.SECTIONS): a heading, then what was measured.
    print("## Lossless and near-lossless (the pixel coder)")
    print()
    print(f"udic lossless (effort {args.effort}) vs lossless WebP (method 6)" + (" and cjxl -d 0 -e 7" if has_jxl else " (cjxl not on PATH)")
          + f", the first {args.max_images} images of each set (the near-lossless rows: the first "
          f"{'all' if args.near_images is None else args.near_images}); ratios are geometric means of per-image bytes, "
          "speeds are megapixels per CPU-second of a serial encode / decode (one process), and of "
          "wall time for an encode with 2 processes" + ("" if workers.cpus() >= 2 else " (not measured: one CPU)") + ".")
    print()
    print("| domain | images | udic bpp | WebP bpp | udic/WebP | udic/JXL | enc MP/s | enc MP/s, 2 processes (wall) | dec MP/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.domains.split(","):
        files = sorted(glob.glob(os.path.join(DATA, DOMAINS[name], "*.png")))[: args.max_images]
        near_count = len(files) if args.near_images is None else args.near_images
        rows = [bench_image(f, args.effort, not args.no_near and i < near_count, name in GRAY_DOMAINS)
                for i, f in enumerate(files)]
        if not rows:
            continue
        px = sum(r["megapixels"] for r in rows) * 1e6
        summary = {
            "images": len(rows),
            "udic_bpp": 8 * sum(r["udic"] for r in rows) / px,
            "webp_bpp": 8 * sum(r["webp"] for r in rows) / px,
            "ratio_webp_gmean": gmean([r["udic"] / r["webp"] for r in rows]),
            "ratio_jxl_gmean": gmean([r["udic"] / r["cjxl"] for r in rows]) if has_jxl else None,
            "encode_mps": sum(r["megapixels"] for r in rows) / sum(r["megapixels"] / r["encode_mps"] for r in rows),
            "decode_mps": sum(r["megapixels"] for r in rows) / sum(r["megapixels"] / r["decode_mps"] for r in rows),
            "encode_wall_mps_2": (sum(r["megapixels"] for r in rows) / sum(r["megapixels"] / r["encode_wall_mps_2"] for r in rows)
                                  if all(r["encode_wall_mps_2"] for r in rows) else None),
            "rows": rows,
        }
        near_rows = [r for r in rows if "near1_bytes" in r]
        if near_rows:
            near_px = sum(r["megapixels"] for r in near_rows) * 1e6
            summary["near_images"] = len(near_rows)
            for n in NEAR:
                summary[f"near{n}_bpp"] = 8 * sum(r[f"near{n}_bytes"] for r in near_rows) / near_px
                summary[f"near{n}_psnr"] = float(np.mean([r[f"near{n}_psnr"] for r in near_rows]))
        results[name] = summary
        jxl = f"{summary['ratio_jxl_gmean']:.3f}" if has_jxl else "n/a"
        wall2 = "n/a" if summary["encode_wall_mps_2"] is None else f"{summary['encode_wall_mps_2']:.2f}"
        print(f"| {name} | {len(rows)} | {summary['udic_bpp']:.3f} | {summary['webp_bpp']:.3f} | "
              f"{summary['ratio_webp_gmean']:.3f} | {jxl} | {summary['encode_mps']:.2f} | {wall2} | {summary['decode_mps']:.2f} |",
              flush=True)
    near = {name: s for name, s in results.items() if "near_images" in s}
    if near:
        print()
        print("| domain | images | " + " | ".join(f"±{n} bpp / PSNR" for n in NEAR) + " |")
        print("|---|---|" + "---|" * len(NEAR))
        for name, s in near.items():
            cells = " | ".join(f"{s[f'near{n}_bpp']:.3f} / {s[f'near{n}_psnr']:.2f}" for n in NEAR)
            print(f"| {name} | {s['near_images']} | {cells} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"effort": args.effort, "domains": results}, fh, indent=1)


if __name__ == "__main__":
    main()
