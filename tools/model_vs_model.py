"""Two udic models side by side, per domain: the rule for changing the packaged default.

``python -m tools.model_vs_model NEW OLD [--kodak 24] [--images 3] --json out.json``
encodes every image at each integer rate with both models (effort 0: the network alone,
every byte of the real file counted), decodes, and reports per domain the mean curves,
the BD-rate of NEW against OLD, the bytes ratio at 30/34/38/42 dB where both reach it,
and each curve's highest PSNR.  NEW and OLD are weights files or registry names/ids.
The default changes only when NEW is better on Kodak and on every out-of-domain set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tools.bench import DOMAINS, EQUAL_PSNR_DB, domain_dirs, pick_images, rate_ratio
from udic.metrics import bd_rate


def load_codec(spec: str):
    from udic import api
    from udic.codec import codec_for_file

    return codec_for_file(Path(spec)) if Path(spec).is_file() else api.get_codec(spec, progress=False)


def measure(codec, images: list[Path]) -> dict:
    """Mean bpp and PSNR per integer rate over ``images`` (real files, real decodes)."""
    from udic.imageio import load_image

    rates = range(codec.config.num_rates)
    bpp = np.zeros(len(rates))
    psnr = np.zeros(len(rates))
    seconds = {"encode": 0.0, "decode": 0.0}
    for path in images:
        img = load_image(path.read_bytes())
        src = img.rgb.astype(np.float64)
        for r in rates:
            t0 = time.perf_counter()
            enc = codec.encode(img, float(r))
            t1 = time.perf_counter()
            out = np.asarray(codec.decode(enc.data).image.convert("RGB"), dtype=np.float64)
            seconds["encode"] += t1 - t0
            seconds["decode"] += time.perf_counter() - t1
            bpp[r] += 8 * len(enc.data) / (src.shape[0] * src.shape[1])
            psnr[r] += 10 * np.log10(255.0**2 / max(np.mean((out - src) ** 2), 1e-12))
    n = len(images)
    return {"bpp": list(bpp / n), "psnr": list(psnr / n), "images": n, "seconds": seconds}


def compare(new: dict, old: dict) -> dict:
    try:
        bd = bd_rate(old["bpp"], old["psnr"], new["bpp"], new["psnr"])
    except ValueError:
        bd = None
    return {
        "bd_new_vs_old": bd,
        "ratio_at": {str(t): rate_ratio(new, old, t) for t in EQUAL_PSNR_DB},
        "top_psnr": {"new": max(new["psnr"]), "old": max(old["psnr"])},
    }


def markdown(result: dict) -> str:
    lines = [f"# {result['new']} against {result['old']}", "",
             f"Effort 0, integer rates, real files; `{result['command']}`.", "",
             "| domain | images | BD-rate new vs old | bytes new/old at " + " / ".join(f"{t:g}" for t in EQUAL_PSNR_DB)
             + " dB | top dB new / old | decode s/img new / old |", "|---|---|---|---|---|---|"]
    for domain, row in result["domains"].items():
        cmp = row["compare"]
        bd = "—" if cmp["bd_new_vs_old"] is None else f"{cmp['bd_new_vs_old']:+.1f} %"
        ratios = " / ".join("—" if v is None else f"{v:.3f}" for v in cmp["ratio_at"].values())
        per = lambda m: m["seconds"]["decode"] / (m["images"] * len(m["bpp"]))  # noqa: E731
        lines.append(f"| {domain} | {row['new']['images']} | {bd} | {ratios} | "
                     f"{cmp['top_psnr']['new']:.2f} / {cmp['top_psnr']['old']:.2f} | "
                     f"{per(row['new']):.2f} / {per(row['old']):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("new")
    parser.add_argument("old")
    parser.add_argument("--kodak", type=int, default=24, help="Kodak images (0 = all)")
    parser.add_argument("--images", type=int, default=3, help="images per out-of-domain set")
    parser.add_argument("--domains", default=",".join(DOMAINS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    a = parser.parse_args(argv)
    import torch

    from udic.train.data import default_data_root

    torch.set_num_threads(1)
    new, old = load_codec(a.new), load_codec(a.old)
    result = {"new": a.new, "old": a.old, "command": " ".join(["python -m tools.model_vs_model", *(argv or sys.argv[1:])]),
              "domains": {}}
    for folder in domain_dirs(default_data_root(), a.domains.split(",")):
        domain = "kodak" if folder.name == "kodak" else folder.name
        images = pick_images(folder, a.kodak if domain == "kodak" else a.images)
        row = {"new": measure(new, images), "old": measure(old, images)}
        row["compare"] = compare(row["new"], row["old"])
        result["domains"][domain] = row
        print(f"{domain}: BD {row['compare']['bd_new_vs_old']}", flush=True)
        if a.json:
            a.json.write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    if a.markdown:
        a.markdown.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
