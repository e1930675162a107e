"""Per-image adaptation: BD-rate gain over non-adaptive udic, per effort and domain.

``python -m tools.benchmarks.adaptation --out bench --efforts 0,1,2 --images 3``

For every domain (Kodak and each ``ood`` set), a spread-out sample of images is
encoded at each quality and effort; bpp counts every byte of the real file and PSNR
is that of the real decode.  Per effort, the domain's average curve (bpp and PSNR
averaged per quality) is compared with effort 0's by BD-rate and BD-PSNR.  Seconds
are per image; "s @768×512" scales them to a Kodak-sized image by pixel count.
Runs with different image counts or efforts are kept side by side in the section.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from udic import api
from udic.adapt import AdaptConfig, adapt_encode, describe_effort
from udic.imageio import load_image
from udic.metrics import bd_psnr, bd_rate, psnr_rgb
from udic.train.data import default_data_root

from .common import command_line, publish

DOMAINS = ("kodak", "comic", "line", "vector", "screen", "pixel")
KODAK_PIXELS = 768 * 512


def domain_images(root: Path, domain: str, count: int) -> list[Path]:
    folder = root / domain if domain == "kodak" else root / "ood" / domain
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".webp", ".jpg"))
    if count and len(images) > count:
        step = len(images) / count
        images = [images[int((i + 0.5) * step)] for i in range(count)]
    return images


def measure(domains: list[str], root: Path, count: int, qualities: list[float], efforts: list[int],
            time_budget: float | None) -> dict:
    codec = api.get_codec(None, progress=False)
    rows = []
    plan = [(d, img) for d in domains for img in domain_images(root, d, count)]
    total = len(plan) * len(qualities) * len(efforts)
    done = 0
    for domain, path in plan:
        image = load_image(path.read_bytes(), allow_large=True)
        pixels = image.rgb.shape[0] * image.rgb.shape[1]
        for q in qualities:
            for effort in efforts:
                cfg = AdaptConfig.for_effort(effort, time_budget=time_budget)
                t0 = time.perf_counter()
                res = adapt_encode(codec, image, q, cfg)
                seconds = time.perf_counter() - t0
                out = np.asarray(codec.decode(res.data).image.convert("RGB"))
                ref = image.rgb if image.mode != "L" else np.asarray(
                    Image.fromarray(image.rgb).convert("L").convert("RGB"))
                rows.append({"domain": domain, "image": path.name, "pixels": pixels, "quality": q,
                             "effort": effort, "bpp": 8 * len(res.data) / pixels, "psnr": psnr_rgb(ref, out),
                             "seconds": seconds, "chosen": res.chosen, "rd_before": res.rd_before,
                             "rd_after": res.rd_after})
                done += 1
                print(f"\r  adaptation: {done}/{total} ({domain} {path.name} q{q:g} e{effort}: "
                      f"{seconds:.1f} s, {res.chosen})   ", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {"rows": rows, "summary": summarise(rows, domains, qualities, efforts), "model": codec.model_id}


def summarise(rows: list[dict], domains: list[str], qualities: list[float], efforts: list[int]) -> list[dict]:
    out = []
    for domain in domains:
        def curve(effort: int) -> tuple[list[float], list[float]]:
            sel = [[r for r in rows if r["domain"] == domain and r["effort"] == effort and r["quality"] == q]
                   for q in qualities]
            return [float(np.mean([r["bpp"] for r in s])) for s in sel], [float(np.mean([r["psnr"] for r in s]))
                                                                          for s in sel]

        base_r, base_p = curve(efforts[0])
        for effort in efforts:
            sel = [r for r in rows if r["domain"] == domain and r["effort"] == effort]
            r_, p_ = curve(effort)
            try:
                bd, bdp = bd_rate(base_r, base_p, r_, p_), bd_psnr(base_r, base_p, r_, p_)
            except ValueError:
                bd = bdp = math.nan
            seconds = [r["seconds"] for r in sel]
            scaled = [r["seconds"] * KODAK_PIXELS / r["pixels"] for r in sel]
            chosen: dict[str, int] = {}
            for r in sel:
                chosen[r["chosen"]] = chosen.get(r["chosen"], 0) + 1
            out.append({"domain": domain, "effort": effort, "images": len({r["image"] for r in sel}),
                        "bd_rate": bd, "bd_psnr": bdp, "seconds": float(np.mean(seconds)),
                        "seconds_kodak_size": float(np.mean(scaled)), "bpp": r_, "psnr": p_, "chosen": chosen})
    return out


def render(section: dict) -> str:
    lines = ["## Per-image adaptation", "",
             "BD-rate of adaptive udic against the same model without adaptation (effort 0), per domain; "
             "negative = fewer bits at equal PSNR. Real files and real decodes throughout. RDOQ is "
             "rate-distortion optimised rounding (no network passes); SGA refines the latents through "
             "the frozen decoder; the adapter is fitted after them; the loop filter (a least-squares linear "
             "filter on the decoded pixels, spec §8) comes last. Each is kept only if it pays for its bits.", ""]
    for run in section["runs"]:
        presets = run.get("presets") or {"1": "RDOQ", "2": "20 SGA steps + RDOQ + a 20-step rank-2 adapter",
                                         "3": "60 SGA steps + RDOQ + a 40-step rank-2 adapter"}
        lines += [f"### {run['images_per_domain']} images per domain, qualities {run['qualities']}, "
                  f"{run['threads']} torch thread(s), model `{run.get('model', '?')}`", "",
                  "Efforts: " + "; ".join(f"{e} = {presets[str(e)]}" for e in run["efforts"]
                                          if str(e) in presets) + ".", "",
                  "| domain | effort | BD-rate | BD-PSNR | s / image | s @768×512 | kept |", "|---|---|---|---|---|---|---|"]
        for s in run["summary"]:
            kept = ", ".join(f"{k} {v}" for k, v in sorted(s["chosen"].items()))
            bd = "–" if not math.isfinite(s["bd_rate"]) else f"{s['bd_rate']:+.1f} %"
            bdp = "–" if not math.isfinite(s["bd_psnr"]) else f"{s['bd_psnr']:+.2f} dB"
            lines.append(f"| {s['domain']} | {s['effort']} | {bd} | {bdp} | {s['seconds']:.1f} | "
                         f"{s['seconds_kodak_size']:.1f} | {kept} |")
        lines += ["", f"Command: `{run['command']}`" + (f" ({run['note']})" if run.get("note") else ""), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.benchmarks.adaptation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench"))
    p.add_argument("--domains", default=",".join(DOMAINS))
    p.add_argument("--images", type=int, default=3, help="images per domain")
    p.add_argument("--qualities", default="1,3,5")
    p.add_argument("--efforts", default="0,1,2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--time-budget", type=float, default=None)
    p.add_argument("--note", default="", help="a remark printed with this run (e.g. machine load)")
    p.add_argument("--replace", action="store_true", help="drop the runs already in the section")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    efforts = [int(e) for e in a.efforts.split(",")]
    if efforts[0] != 0:
        efforts = [0] + efforts  # the baseline every gain is measured against
    qualities = [float(q) for q in a.qualities.split(",")]
    domains = [d for d in a.domains.split(",") if d]
    result = measure(domains, default_data_root(), a.images, qualities, efforts, a.time_budget)
    run = {"command": command_line(argv, "tools.benchmarks.adaptation"), "images_per_domain": a.images,
           "qualities": a.qualities, "efforts": efforts, "threads": a.threads, "note": a.note,
           "presets": {str(e): describe_effort(e) for e in efforts if e > 0}, **result}
    path = a.out / "sections" / "adaptation.json"
    section = {"runs": []}
    if path.exists() and not a.replace:
        import json

        section = json.loads(path.read_text())
    section["runs"] = [r for r in section["runs"] if not (r["images_per_domain"] == a.images and
                                                          r["efforts"] == efforts and r["qualities"] == a.qualities)]
    section["runs"].append(run)
    return publish(a.out, "adaptation", section, render(section))


if __name__ == "__main__":
    raise SystemExit(main())
