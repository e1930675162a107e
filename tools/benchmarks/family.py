"""The LoRAM model family: storage, LoRA against full fine-tuning, training cost, speed.

``python -m tools.benchmarks.family --family F.safetensors --base B.safetensors
    --lora-run runs/lora-v1 --full runs/full-v1/full-r0.pt runs/full-v1/full-r5.pt``

* storage: the family file (base + every rate's delta) against one model and six;
* LoRA against full fine-tuning (same base, data, steps): real files at that rate on
  Kodak; the rate difference is read at equal PSNR off the family's own RD curve
  (PCHIP of log-bpp over PSNR through its six rates), i.e. a one-point BD-rate;
* steps and wall time per rate against the base's;
* decode speed with a merged delta against the base rate (no delta);
* fp16 against fp32 weights (the shipped file is fp16 where it costs < 0.05 dB).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from udic import hub, modelfile
from udic.codec import Codec
from udic.imageio import LoadedImage
from udic.metrics import Pchip
from udic.train.data import EVAL_KODAK, default_data_root, list_images, load_rgb
from udic.train.evaluate import codec_from_checkpoint, coded_rd

from .common import command_line, publish


def _weights_path(name: str) -> Path:
    """A .safetensors/.pt path, or a model id or name the hub knows (e.g. the packaged ones)."""
    path = Path(name)
    if path.suffix in (".pt", ".safetensors") and path.exists():
        return path
    return hub.resolve(name, progress=False).path


def base_of_family(family_path: Path) -> tuple[Codec, int]:
    """The family's own base: its weights without the per-rate deltas (what the base
    rate uses, at every rate), as a codec and the size its weights file has.  No
    separate base file needs to ship with a family."""
    from udic.models import UdicModel
    from udic.train.export import load_weights

    loaded = modelfile.load(family_path)  # unmerged (a codec merges a rate at once)
    model = UdicModel(loaded.model.config)
    load_weights(model, {k: v for k, v in loaded.model.state_dict().items() if ".lora." not in k},
                 f"{family_path}: the family without its deltas")
    data = modelfile.export_bytes(model.eval(), info=loaded.metadata.get("info", {}).get("base_training", {}))
    return Codec(modelfile.load_bytes(data), hub.model_id_for_bytes(data)), len(data)


def _codec(path: Path) -> Codec:
    if path.suffix == ".pt":
        return codec_from_checkpoint(path)
    return Codec(modelfile.load(path), hub.model_id_for_file(path))


EXTRAPOLATE_DB = 0.25  # a point this far beyond the curve's end is read off its last segment


def rate_saving(curve: list[dict], point: dict) -> float:
    """bpp of ``point`` against the curve's bpp at the same PSNR, in percent (negative = fewer bits).

    Inside the curve: PCHIP of log-bpp over PSNR.  Up to EXTRAPOLATE_DB beyond an end
    (a fine-tune of the top rate lands just above it): the end segment, extended.
    """
    ordered = sorted(curve, key=lambda r: r["psnr"])
    psnr = np.array([r["psnr"] for r in ordered])
    log_bpp = np.log10([r["bpp"] for r in ordered])
    x = point["psnr"]
    if psnr[0] <= x <= psnr[-1]:
        at = float(Pchip(psnr, log_bpp)(x))
    elif psnr[-1] < x <= psnr[-1] + EXTRAPOLATE_DB:
        at = float(log_bpp[-1] + (x - psnr[-1]) * (log_bpp[-1] - log_bpp[-2]) / (psnr[-1] - psnr[-2]))
    elif psnr[0] - EXTRAPOLATE_DB <= x < psnr[0]:
        at = float(log_bpp[0] + (x - psnr[0]) * (log_bpp[1] - log_bpp[0]) / (psnr[1] - psnr[0]))
    else:
        return math.nan
    return 100.0 * (point["bpp"] / 10**at - 1.0)


def decode_seconds(codec: Codec, rgb: np.ndarray, quality: float, repeats: int = 3) -> float:
    data = codec.encode(LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None), quality).data
    codec.decode(data)  # warm-up (merges the rate's delta once)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        codec.decode(data)
        best = min(best, time.perf_counter() - t0)
    return best


TARGETS = (("bpp", 0.2), ("bpp", 0.5), ("bpp", 0.9), ("psnr", 29.0), ("psnr", 32.0), ("psnr", 34.5))


def measure_targets(codec: Codec, images: list[np.ndarray]) -> list[dict]:
    """Each target on each image through the API's search (effort 0): error, encodes, seconds."""
    from udic.api import encode_with
    from udic.metrics import psnr_rgb
    from udic.ratecontrol import RateTarget

    rows = []
    for metric, value in TARGETS:
        for rgb in images:
            image = LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None)
            calls = 0
            original = codec.encode

            def counting(*args, **kwargs):
                nonlocal calls
                calls += 1
                return original(*args, **kwargs)

            codec.encode = counting  # type: ignore[method-assign]
            try:
                t0 = time.perf_counter()
                # The family's own reach: no pixel-coded answer beyond its top rate.
                enc = encode_with(codec, image, 3.0, target=RateTarget(metric, value),  # type: ignore[arg-type]
                                  choose_mode=False)
                seconds = time.perf_counter() - t0
            finally:
                del codec.encode
            achieved = enc.bpp if metric == "bpp" else psnr_rgb(rgb, np.asarray(codec.decode(enc.data).image))
            reachable = not any("target" in n for n in enc.notices)
            rows.append({"metric": metric, "target": value, "achieved": achieved, "encodes": calls,
                         "seconds": seconds, "reachable": reachable, "quality": enc.header.quality})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.benchmarks.family", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench"))
    p.add_argument("--family", default=None, help="weights with the per-rate deltas (default: udic's default)")
    p.add_argument("--base", default=None,
                   help="the base weights alone (path, model id or name); default: the family without its deltas")
    p.add_argument("--lora-run", type=Path, default=None, help="the LoRA run folder (lora.json, last.pt)")
    p.add_argument("--full", type=Path, nargs="*", default=[], help="full fine-tune checkpoints full-r<k>.pt")
    p.add_argument("--lora-checkpoint", type=Path, default=None,
                   help="the LoRA model the full fine-tunes are compared with, if not the family itself "
                        "(e.g. before a rate was retrained at another λ)")
    p.add_argument("--images", default="all", help="'all' Kodak images or 'subset' (6)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--render-only", action="store_true",
                   help="recompute the derived numbers and the markdown from the section's JSON")
    a = p.parse_args(argv)
    if a.render_only:
        path = a.out / "sections" / "family.json"
        r = json.loads(path.read_text())
        carried = r.get("lora_vs_full_family") not in (None, r["family_id"])  # read off another curve
        for c in [] if carried else r.get("lora_vs_full", []):
            for key, pt in (("full_vs_lora_curve", c["full"]), ("lora_vs_lora_curve", c["lora"]),
                            ("base_vs_lora_curve", c["base"])):
                c[key] = rate_saving(r["family_rd"], pt)
        return publish(a.out, "family", r, render(r))
    torch.set_num_threads(a.threads)
    a.family = hub.resolve(None, progress=False).path if a.family is None else _weights_path(a.family)
    a.base = None if a.base is None else _weights_path(a.base)
    kodak = default_data_root() / "kodak"
    paths = list_images(kodak) if a.images == "all" else [kodak / f"{n}.png" for n in EVAL_KODAK]
    images = [load_rgb(q) for q in paths]
    family = _codec(a.family)
    if a.base is None:
        base, base_bytes = base_of_family(a.family)
    else:
        base, base_bytes = _codec(a.base), a.base.stat().st_size
    n_rates = family.config.num_rates
    qualities = [float(q) for q in range(n_rates)]
    print("family: measuring the family and the base", file=sys.stderr)
    fam_rd = coded_rd(family, images, qualities)
    base_rd = coded_rd(base, images, qualities)
    r: dict = {"command": command_line(argv, "tools.benchmarks.family"), "images": len(images),
               "family_id": family.model_id,
               "base_id": (family.metadata.get("info", {}).get("base_model", base.model_id) if a.base is None
                           else base.model_id),
               "base_derived": a.base is None,
               "family_rd": fam_rd, "base_rd": base_rd}

    # (a) storage
    fam_bytes = a.family.stat().st_size
    deltas = sum(v.numel() for k, v in family.model.state_dict().items() if ".lora." in k)
    params = sum(v.numel() for k, v in family.model.state_dict().items() if ".lora." not in k)
    r["storage"] = {"family_bytes": fam_bytes, "base_bytes": base_bytes, "separate_models_bytes": n_rates * base_bytes,
                    "ratio_to_one_model": fam_bytes / base_bytes, "delta_parameters": deltas,
                    "base_parameters": params, "saving_vs_separate": 1 - fam_bytes / (n_rates * base_bytes)}

    # (b) LoRA vs full fine-tuning at the same steps
    comparisons = []
    for ckpt in a.full:
        rate = int(ckpt.stem.rsplit("r", 1)[-1])
        print(f"family: full fine-tune of rate {rate}", file=sys.stderr)
        full_pt = coded_rd(_codec(ckpt), images, [float(rate)])[0]
        lora_pt = coded_rd(_codec(a.lora_checkpoint), images, [float(rate)])[0] if a.lora_checkpoint else fam_rd[rate]
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        comparisons.append({"rate": rate, "steps": int(state.get("step", 0)), "wall_s": float(state.get("wall", 0.0)),
                            "lora": lora_pt, "full": full_pt, "base": base_rd[rate],
                            "full_vs_lora_curve": rate_saving(fam_rd, full_pt),
                            "lora_vs_lora_curve": rate_saving(fam_rd, lora_pt),
                            "base_vs_lora_curve": rate_saving(fam_rd, base_rd[rate])})
    previous = a.out / "sections" / "family.json"
    if not comparisons and previous.exists():
        # Full fine-tunes are training runs, not part of every bench: keep the last
        # measurement, saying which family it was made on if that was another one.
        old = json.loads(previous.read_text())
        if old.get("lora_vs_full"):
            comparisons = old["lora_vs_full"]
            r["lora_vs_full_command"] = old.get("lora_vs_full_command", old.get("command"))
            r["lora_vs_full_family"] = old.get("lora_vs_full_family", old.get("family_id"))
    else:
        r["lora_vs_full_command"] = r["command"]
    r["lora_vs_full"] = comparisons

    # (c) training cost per rate
    base_info = base.metadata.get("info", {})
    r["training"] = {"base_steps": int(base_info.get("steps", 0)), "base_wall_s": float(base_info.get("wall_seconds", 0))}
    family_info = family.metadata.get("info", {})
    if "loram" in family_info:  # written by the export of the LoRA run (see docs/training.md)
        r["training"].update(family_info["loram"])

    # (d) decode speed: merged delta against the base rate, and against the base model
    rgb = load_rgb(kodak / "kodim23.png")
    base_rate = r["training"].get("base_rate", 3) or 3
    speed = {f"family q{q:g}": decode_seconds(family, rgb, q) for q in (0.0, float(base_rate), 5.0)}
    speed["base model q3"] = decode_seconds(base, rgb, 3.0)
    r["decode_seconds"] = speed

    # (e) fp16 against fp32 (the LoRA run's checkpoint holds the fp32 weights)
    if a.lora_run and (a.lora_run / "last.pt").exists():
        sub = [load_rgb(kodak / f"{n}.png") for n in EVAL_KODAK]
        fp32 = coded_rd(codec_from_checkpoint(a.lora_run / "last.pt", fp16=False), sub, qualities)
        fp16 = coded_rd(codec_from_checkpoint(a.lora_run / "last.pt", fp16=True), sub, qualities)
        r["fp16"] = [{"quality": x["quality"], "psnr_fp32": x["psnr"], "psnr_fp16": y["psnr"],
                      "bpp_fp32": x["bpp"], "bpp_fp16": y["bpp"]} for x, y in zip(fp32, fp16)]
    elif previous.exists():
        old = json.loads(previous.read_text())
        if old.get("family_id") == family.model_id and old.get("fp16"):
            r["fp16"] = old["fp16"]
    # (f) continuous rate: how close --target-bpp / --target-psnr land
    r["targets"] = measure_targets(family, [load_rgb(kodak / f"{n}.png") for n in EVAL_KODAK])
    return publish(a.out, "family", r, render(r))


def render(r: dict) -> str:
    s = r["storage"]
    t = r["training"]
    lines = ["## The model family (LoRAM variable rate)", "",
             f"Family `{r['family_id']}` = base `{r['base_id']}`"
             + (" (measured as the family's weights without the deltas)" if r.get("base_derived") else "")
             + " + one low-rank delta per rate "
             f"(rank {t.get('rank', '?')} on the transforms, {t.get('hyper_rank', '?')} on the hyperprior"
             + (f", none on {t['exclude'].replace(',', ' and ')}" if t.get("exclude") else "")
             + f"; rate {t.get('base_rate', '?')} is the base itself). Kodak, {r['images']} images, real files.", "",
             "| q | family bpp | family dB | base-only bpp | base-only dB |", "|---|---|---|---|---|"]
    for f, b in zip(r["family_rd"], r["base_rd"]):
        lines.append(f"| {f['quality']:g} | {f['bpp']:.4f} | {f['psnr']:.2f} | {b['bpp']:.4f} | {b['psnr']:.2f} |")
    lines += ["", f"**Storage**: {s['family_bytes'] / 1e6:.2f} MB for all rates against {s['base_bytes'] / 1e6:.2f} MB "
              f"for one model ({s['ratio_to_one_model']:.3f}×; target ≤ 1.05×) and "
              f"{s['separate_models_bytes'] / 1e6:.1f} MB for six separate models "
              f"({100 * s['saving_vs_separate']:.1f} % less). Deltas: {s['delta_parameters']:,} parameters "
              f"against {s['base_parameters']:,} in the base.", ""]
    if r["lora_vs_full"]:
        other = r.get("lora_vs_full_family")
        lines += ["**LoRA against full fine-tuning** from the same base with the same batches and steps. "
                  "'vs family curve' is the bit-rate difference at equal PSNR, read off the family's RD curve "
                  "(negative = better than the LoRA family)"
                  + (f"; measured on the earlier family `{other}`, whose curve it is read off"
                     if other and other != r["family_id"] else "") + ":", "",
                  f"(measured by `{r.get('lora_vs_full_command', r['command'])}`)", "",
                  "| rate | steps | LoRA bpp / dB | full FT bpp / dB | LoRA vs family curve | full FT vs family curve "
                  "| base-only vs family curve |",
                  "|---|---|---|---|---|---|---|"]
        for c in r["lora_vs_full"]:
            lines.append(f"| {c['rate']} | {c['steps']} | {c['lora']['bpp']:.4f} / {c['lora']['psnr']:.2f} | "
                         f"{c['full']['bpp']:.4f} / {c['full']['psnr']:.2f} | {c.get('lora_vs_lora_curve', 0.0):+.1f} % | "
                         f"{c['full_vs_lora_curve']:+.1f} % | "
                         f"{c['base_vs_lora_curve']:+.1f} % |")
        lines.append("")
    if t.get("wall_per_rate"):
        total = sum(t["wall_per_rate"].values())
        lines += [f"**Training cost**: base {t['base_steps']:,} steps, {t['base_wall_s'] / 3600:.2f} h; each delta "
                  f"{t['steps_per_rate']:,} steps ({100 * t['steps_per_rate'] / max(t['base_steps'], 1):.0f} % of "
                  f"the base), " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in t["wall_per_rate"].items())
                  + f"; all deltas {total / 3600:.2f} h. Five more separately trained models would take "
                  f"{5 * t['base_steps']:,} steps; the deltas take "
                  f"{100 * (1 - len(t['wall_per_rate']) * t['steps_per_rate'] / (5 * max(t['base_steps'], 1))):.0f} % "
                  "fewer.", ""]
    sp = r["decode_seconds"]
    lines += ["**Decode time** (kodim23, 768×512, best of 3, merged weights): "
              + ", ".join(f"{k} {v:.3f} s" for k, v in sp.items()) + ".", ""]
    if r.get("fp16"):
        worst = max(abs(x["psnr_fp32"] - x["psnr_fp16"]) for x in r["fp16"])
        lines += [f"**fp16 weights**: largest PSNR change against fp32 over the six rates (6 Kodak images) "
                  f"{worst:.3f} dB (limit 0.05 dB).", ""]
    if r.get("targets"):
        lines += ["**Continuous rate** (`--target-bpp`, `--target-psnr`; 6 Kodak images, effort 0): how far the "
                  "file lands from the target when it is reachable (promise: 3 % / 0.1 dB):", "",
                  "| target | reachable | worst miss | mean miss | encodes per search | seconds |", "|---|---|---|---|---|---|"]
        for metric, value in TARGETS:
            sel = [x for x in r["targets"] if x["metric"] == metric and x["target"] == value]
            ok = [x for x in sel if x["reachable"]]
            if metric == "bpp":
                miss = [100 * abs(x["achieved"] / value - 1) for x in ok]
                fmt = lambda m: f"{m:.2f} %"  # noqa: E731
            else:
                miss = [abs(x["achieved"] - value) for x in ok]
                fmt = lambda m: f"{m:.3f} dB"  # noqa: E731
            lines.append(f"| {value:g} {'bpp' if metric == 'bpp' else 'dB'} | {len(ok)}/{len(sel)} | "
                         f"{fmt(max(miss)) if miss else '–'} | {fmt(float(np.mean(miss))) if miss else '–'} | "
                         f"{np.mean([x['encodes'] for x in sel]):.1f} | {np.mean([x['seconds'] for x in sel]):.1f} |")
        lines.append("")
    lines += [f"Command: `{r['command']}`"]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
