"""``python -m tools.bench``: the project's RD and speed report (markdown + JSON + plots).

udic itself is measured directly (real files, per-image encode/decode seconds).
Anchor codecs go through the ``compare`` sweep machinery; their curves do not depend
on udic's model, so they are cached in ``<out>/anchors.json`` keyed by the image list
and codec settings and only recomputed when those change (or with --refresh-anchors).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from udic import api
from udic.effort import DEFAULT_EFFORT, describe_effort
from udic.compare import CompareResult, RDPoint, average_curves, bd_table, collect_images, plot_rd, run_sweep
from udic.imageio import load_image
from udic.metrics import ms_ssim_rgb, psnr_rgb
from udic import modelchoice
from udic.train.data import default_data_root

from .equal_quality import is_udic, per_image_lines, per_image_table

DOMAINS = ("kodak", "comic", "line", "vector", "screen", "pixel")
ANCHOR_CODECS = ("jpeg", "webp", "avif", "jxl", "hevc", "bpg", "vvc")


def domain_dirs(root: Path, domains: list[str]) -> list[Path]:
    out = []
    for d in domains:
        p = root / d if d == "kodak" else root / "ood" / d
        if p.is_dir():
            out.append(p)
    return out


def pick_images(folder: Path, limit: int) -> list[Path]:
    _, images = collect_images([folder])[0]
    if limit and len(images) > limit:
        step = len(images) / limit
        images = [images[int(i * step)] for i in range(limit)]
    return images


def udic_name(effort: int) -> str:
    """The curve name of udic at an effort: "udic" without adaptation, "udic-e1" … with it."""
    return "udic" if effort == 0 else f"udic-e{effort}"


def measure_udic(domain: str, images: list[Path], qualities: list[float], model: str | None,
                 progress: bool, effort: int = 0) -> tuple[list[RDPoint], list[dict]]:
    fidelity = api.fidelity_loader(model, lambda m: api.get_codec(m, progress=False))  # as `udic encode`
    points: list[RDPoint] = []
    timings: list[dict] = []
    total = len(images) * len(qualities)
    done = 0
    for image in images:
        loaded = load_image(image, allow_large=True)
        ref = loaded.rgb
        codec = api.codec_for(loaded, model, effort, progress=progress)  # as `udic encode`: by content
        pixels = ref.shape[0] * ref.shape[1]
        for q in qualities:
            t0 = time.perf_counter()
            enc = api.encode_with(codec, loaded, q, effort, fidelity=fidelity)
            t1 = time.perf_counter()
            dec = api.decode(enc.data, progress=False, model=model)  # learned or pixel-coded
            t2 = time.perf_counter()
            out = np.asarray(dec.image.convert("RGB"))
            psnr = psnr_rgb(ref, out)
            try:
                ms = ms_ssim_rgb(ref, out)
            except ValueError:
                ms = float("nan")
            points.append(RDPoint(udic_name(effort), image.name, len(enc.data), 8 * len(enc.data) / pixels, psnr, ms,
                                  image=str(image), domain=domain, quality=q))
            timings.append({"image": image.name, "quality": q, "pixels": pixels, "effort": effort,
                            "encode_s": t1 - t0, "decode_s": t2 - t1})
            done += 1
            if progress:
                print(f"\r  {udic_name(effort)} {domain}: {done}/{total}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return points, timings


def measure_udic_targets(domain: str, images: list[Path], targets: list[float], model: str | None,
                         progress: bool, effort: int) -> list[RDPoint]:
    """The files a user gets from ``udic encode --target-psnr T``: the curve ``udic-eN-target``,
    for the image-by-image table only (the file meeting a target is what "bytes at equal PSNR"
    asks for, where the -q ladder's points are interpolated across the jump from the network's
    top rate to near-lossless)."""
    from udic.ratecontrol import RateTarget

    fidelity = api.fidelity_loader(model, lambda m: api.get_codec(m, progress=False))  # as `udic encode`
    points: list[RDPoint] = []
    name = f"{udic_name(effort)}-target"
    for n, image in enumerate(images):
        loaded = load_image(image, allow_large=True)
        ref = loaded.rgb
        codec = api.codec_for(loaded, model, effort, progress=progress)  # as `udic encode`: by content
        for t in targets:
            enc = api.encode_with(codec, loaded, 3.0, effort, target=RateTarget("psnr", t), fidelity=fidelity)
            out = np.asarray(api.decode(enc.data, progress=False, model=model).image.convert("RGB"))
            points.append(RDPoint(name, image.name, len(enc.data), 8 * len(enc.data) / (ref.shape[0] * ref.shape[1]),
                                  psnr_rgb(ref, out), float("nan"), image=str(image), domain=domain, quality=t))
        if progress:
            print(f"\r  {name} {domain}: {n + 1}/{len(images)}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return points


REPO_ANCHORS = Path(__file__).resolve().parents[1] / "bench" / "anchors.json"


def images_key(images: list[Path]) -> str:
    h = hashlib.sha256()
    for p in images:
        h.update(p.name.encode())
        h.update(str(p.stat().st_size).encode())
    return h.hexdigest()[:16]


def load_anchor_cache(path: Path) -> dict:
    """{"<domain>/<codec>": {"key": images-key, "points": [...], "notes": [...]}}."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data.get("entries", {}) if isinstance(data, dict) else {}


def _fmt(v: float | None, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("bench"))
    p.add_argument("--data", type=Path, default=None, help="shared data root (default ../shared/data)")
    p.add_argument("--domains", default=",".join(DOMAINS))
    p.add_argument("--max-images", type=int, default=0, help="per out-of-domain set (0 = all)")
    p.add_argument("--max-kodak", type=int, default=0, help="Kodak images (0 = all 24)")
    p.add_argument("--codecs", default=",".join(ANCHOR_CODECS), help="anchor codecs")
    p.add_argument("--qualities", default="",
                   help="udic's -q settings (default: the model's rates, then near-lossless ±4, ±2, ±1)")
    p.add_argument("--model", default=None)
    p.add_argument("--efforts", default=f"0,{DEFAULT_EFFORT}",
                   help="udic's adaptation efforts to measure, each its own curve (0 = none; the default)")
    p.add_argument("--targets", default="",
                   help="also encode each image with --target-psnr T for these T (dB, comma-separated): "
                        "curves udic-eN-target in the image-by-image table")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--refresh-anchors", action="store_true")
    p.add_argument("--anchors-only", action="store_true")
    p.add_argument("--cached-anchors", action="store_true",
                   help="use only anchor curves already cached (in --out, else the repository's bench/anchors.json); "
                        "note the missing ones")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--kodak-names", default="",
                   help="measure only these Kodak images (comma-separated stems, e.g. the 6 of the external anchors)")
    p.add_argument("--external-anchors", type=Path, default=None,
                   help="folder of anchor results measured elsewhere (default: <data>/anchors; BPG and VVC on Kodak)")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite report.md from report.json and the current sections (no measuring)")
    a = p.parse_args(argv)
    if a.render_only:
        report = json.loads((a.out / "report.json").read_text())
        plots = {name: f"rd-{name}.png" for name in report["per_rate"] if (a.out / f"rd-{name}.png").exists()}
        (a.out / "report.md").write_text(render_markdown(report, plots, a.out / "sections"))
        return 0
    torch.set_num_threads(a.threads)
    progress = not a.quiet
    root = a.data or default_data_root()
    domains = [d for d in a.domains.split(",") if d]
    dirs = domain_dirs(root, domains)
    if not dirs:
        print(f"udic bench: no data folders under {root}", file=sys.stderr)
        return 1
    a.out.mkdir(parents=True, exist_ok=True)
    dirs_images = {
        d.name: pick_images(d, a.max_kodak if d.name == "kodak" else a.max_images) for d in dirs
    }
    if a.kodak_names and "kodak" in dirs_images:
        wanted = set(a.kodak_names.split(","))
        dirs_images["kodak"] = [img for img in dirs_images["kodak"] if img.stem in wanted]
    codecs = [c for c in a.codecs.split(",") if c]

    # ---- anchors (cached per domain and codec) ---------------------------------------
    cache = a.out / "anchors.json"
    entries = {} if a.refresh_anchors else load_anchor_cache(cache)
    if a.cached_anchors and cache.resolve() != REPO_ANCHORS.resolve():
        # A report written elsewhere still reads the repository's committed curves (session 40's
        # runs into /tmp found none and said "not measured yet" for every anchor).
        for k, v in load_anchor_cache(REPO_ANCHORS).items():
            entries.setdefault(k, v)
    anchor_points: list[RDPoint] = []
    anchor_notes: list[str] = []
    for name, imgs in dirs_images.items():
        key = images_key(imgs)
        for codec_name in codecs:
            entry = entries.get(f"{name}/{codec_name}")
            if (entry is None or entry.get("key") != key) and a.cached_anchors:
                anchor_notes.append(f"{name}: {codec_name} not measured yet (no cached anchor curve)")
                continue
            if entry is None or entry.get("key") != key:
                if progress:
                    print(f"anchors: {name}/{codec_name} ({len(imgs)} images)", file=sys.stderr)
                with tempfile.TemporaryDirectory(prefix="udic-bench-") as tmp:
                    tmp_links = Path(tmp) / name
                    tmp_links.mkdir()
                    for img in imgs:
                        os.symlink(img.resolve(), tmp_links / img.name)
                    res = run_sweep([tmp_links], [codec_name], jobs=a.jobs, progress=progress)
                for pt in res.points:
                    pt.domain = name
                entry = {"key": key, "points": [asdict(pt) for pt in res.points], "notes": res.notes,
                         "commands": res.commands}
                entries[f"{name}/{codec_name}"] = entry
                cache.write_text(json.dumps({"entries": entries}, indent=1))
            anchor_points.extend(RDPoint(**pt) for pt in entry["points"])
            anchor_notes.extend(f"{name}: {n}" for n in entry.get("notes", []))
    if a.anchors_only:
        return 0

    # ---- udic ----------------------------------------------------------------------------
    qualities = [float(q) for q in a.qualities.split(",")] if a.qualities else api.default_qualities(a.model)
    api.get_codec(a.model, progress=progress)  # load (and report) the model once, up front
    efforts = [int(e) for e in a.efforts.split(",") if e]
    udic_points: list[RDPoint] = []
    timings: dict[str, list[dict]] = {}
    for name, imgs in dirs_images.items():
        timings[name] = []
        for effort in efforts:
            pts, tim = measure_udic(name, imgs, qualities, a.model, progress, effort)
            udic_points.extend(pts)
            timings[name].extend(tim)

    targets = [float(t) for t in a.targets.split(",") if t]
    target_points: list[RDPoint] = []
    if targets:
        for name, imgs in dirs_images.items():
            for effort in efforts:
                target_points.extend(measure_udic_targets(name, imgs, targets, a.model, progress, effort))

    points = anchor_points + udic_points
    extra_curves: list[dict] = []
    external = a.external_anchors or root / "anchors"
    if "kodak" in dirs_images and external.is_dir():
        ext_curves, ext_notes = external_anchor_curves(external)
        anchor_notes.extend(ext_notes)
        extra_curves = list(ext_curves)
        for names in dict.fromkeys(tuple(c["image_names"]) for c in ext_curves):
            ours, sub_notes = udic_subset_curves(udic_points, "kodak", list(names))
            anchor_notes.extend(sub_notes)
            extra_curves += ours
    counts = {name: len(imgs) for name, imgs in dirs_images.items()}
    curves, notes = average_curves(points, counts)
    bd_vs_jpeg, _, n1 = bd_table(curves, "jpeg")
    bd_vs_hevc, _, n2 = bd_table(curves, "hevc") if any(c.codec == "hevc" for c in curves) else ([], {}, [])

    # ---- per-rate table (udic, Kodak first) ------------------------------------------------
    per_rate: dict[str, list[dict]] = {}
    for name in dirs_images:
        rows = []
        for effort in efforts:
            for q in qualities:
                sel = [pt for pt in udic_points
                       if pt.domain == name and pt.quality == q and pt.codec == udic_name(effort)]
                tim = [t for t in timings[name] if t["quality"] == q and t["effort"] == effort]
                rows.append({
                    "effort": effort,
                    "quality": q,
                    "bpp": float(np.mean([pt.bpp for pt in sel])),
                    "psnr": float(np.mean([pt.psnr for pt in sel])),
                    "ms_ssim": float(np.nanmean([pt.ms_ssim for pt in sel])),
                    "encode_s": float(np.mean([t["encode_s"] for t in tim])),
                    "decode_s": float(np.mean([t["decode_s"] for t in tim])),
                    "megapixels": float(np.mean([t["pixels"] for t in tim])) / 1e6,
                })
        per_rate[name] = rows

    plots = {}
    for name in dirs_images:
        sub = CompareResult("sweep", [], [c for c in curves if c.domain == name], [], {}, [])
        path = a.out / f"rd-{name}.png"
        try:
            plot_rd(sub, path)
            plots[name] = path.name
        except Exception as exc:  # noqa: BLE001 - a missing matplotlib must not lose the report
            notes.append(f"no plot for {name}: {exc}")

    weights = api.get_codec(a.model, progress=False)
    from udic import hub

    resolved = hub.resolve(a.model, progress=False)
    from .benchmarks.common import command_line

    report = {
        "command": command_line(argv, "tools.bench"),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": a.threads, "platform": platform.platform(),
                    "torch": torch.__version__},
        "model": {"id": weights.model_id, "file": resolved.path.name, "bytes": resolved.path.stat().st_size,
                  "info": weights.metadata.get("info", {})},
        # From effort 1 images that look synthetic are coded with this model (``api.codec_for``).
        "synthetic_model": modelchoice.SYNTHETIC_MODEL if a.model is None else None,
        "images": {k: len(v) for k, v in dirs_images.items()},
        "per_rate": per_rate,
        "bd_vs_jpeg": [asdict(b) for b in bd_vs_jpeg],
        "bd_vs_hevc": [asdict(b) for b in bd_vs_hevc],
        "curves": [asdict(c) for c in curves],
        "extra_curves": extra_curves,
        # every file, for the image-by-image table (tools/equal_quality.py)
        "points": [{"domain": pt.domain, "codec": pt.codec, "image": Path(pt.image).name, "quality": pt.quality,
                    "bytes": pt.bytes, "psnr": pt.psnr, "ok": pt.ok} for pt in points + target_points],
        "notes": notes + n1 + n2 + anchor_notes,
    }
    (a.out / "report.json").write_text(json.dumps(report, indent=1))
    (a.out / "report.md").write_text(render_markdown(report, plots, a.out / "sections"))
    if progress:
        print(f"wrote {a.out / 'report.md'} and {a.out / 'report.json'}", file=sys.stderr)
    return 0


def udic_against_anchors(curves: list[dict]) -> list[str]:
    """One table: udic's BD-rate against every anchor, per domain and measured effort."""
    from udic.metrics import bd_rate

    domains = list(dict.fromkeys(c["domain"] for c in curves))
    anchors = [a for a in ANCHOR_CODECS if any(c["codec"] == a for c in curves)]
    variants = sorted({c["codec"] for c in curves if c["codec"] == "udic" or c["codec"].startswith("udic-e")},
                      key=lambda v: (v != "udic", v))
    if not anchors or not variants:
        return []
    lines = ["## Summary: udic's BD-rate against each anchor", "",
             "Positive = udic needs that many % more bits than the anchor at equal PSNR (– = not measured "
             "on that domain). `udic` is without per-image adaptation (`--effort 0`); `udic-eN` is "
             "`--effort N` (the CLI's default is "
             f"{DEFAULT_EFFORT}: {describe_effort(DEFAULT_EFFORT)}).", "",
             "| domain | udic | " + " | ".join(anchors) + " |", "|---" * (len(anchors) + 2) + "|"]
    for d, variant in ((d, v) for d in domains for v in variants):
        ours = next((c for c in curves if c["domain"] == d and c["codec"] == variant), None)
        if ours is None:
            continue
        cells = [variant]
        for a in anchors:
            ref = next((c for c in curves if c["domain"] == d and c["codec"] == a), None)
            try:
                cells.append("–" if ref is None else f"{bd_rate(ref['bpp'], ref['psnr'], ours['bpp'], ours['psnr']):+.1f} %")
            except ValueError:
                cells.append("no overlap")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return lines + [""]


# ---- bytes at equal PSNR: what a user who asks for a quality pays ------------------------

EQUAL_PSNR_DB = (30.0, 34.0, 38.0, 42.0)
# Codecs of the externally measured anchor results (../shared/data/anchors) → curve names.
EXTERNAL_CODECS = {"bpg444": "bpg", "vtm444": "vvc", "vvenc420": "vvenc-420"}
TABLE_ANCHORS = ("avif", "webp", "jxl", "hevc", "jpeg", "bpg", "vvc", "vvenc-420")


def log_rate_at(bpp: list[float], psnr: list[float], target: float) -> float | None:
    """log10(bpp) of a curve at ``target`` dB, linear in PSNR between the two points around it.

    Points that do not raise PSNR over a cheaper point are dropped first (they are never
    the best way to reach a quality).  None when the curve does not reach ``target``
    (or starts above it): a ratio there would be an extrapolation.
    """
    hull: list[tuple[float, float]] = []
    for b, q in sorted(zip(bpp, psnr)):
        if b > 0 and math.isfinite(q) and (not hull or q > hull[-1][1]):
            hull.append((b, q))
    if not hull or not hull[0][1] <= target <= hull[-1][1]:
        return None
    if len(hull) == 1:
        return math.log10(hull[0][0])
    for (b0, q0), (b1, q1) in zip(hull, hull[1:]):
        if q0 <= target <= q1:
            w = (target - q0) / (q1 - q0)
            return (1 - w) * math.log10(b0) + w * math.log10(b1)
    return None  # unreachable: target lies within the hull's range


def rate_ratio(ours: dict, anchor: dict, target: float) -> float | None:
    """udic's bytes over the anchor's at ``target`` dB (< 1: udic is smaller), or None
    where either curve does not reach that PSNR."""
    a = log_rate_at(ours["bpp"], ours["psnr"], target)
    b = log_rate_at(anchor["bpp"], anchor["psnr"], target)
    return None if a is None or b is None else 10 ** (a - b)


def equal_psnr_table(curves: list[dict], targets: tuple[float, ...] = EQUAL_PSNR_DB) -> list[dict]:
    """Per domain, udic variant and anchor: udic/anchor bytes at each target PSNR.

    A curve may carry ``subset`` (an image set smaller than the domain's, e.g. the 6
    Kodak images of the external BPG/VVC results): it is compared only with udic's
    curve on the same subset.  Each row also gives the highest PSNR udic's curve reaches.
    """
    rows = []
    domains = sorted(dict.fromkeys(c["domain"] for c in curves),
                     key=lambda d: DOMAINS.index(d) if d in DOMAINS else len(DOMAINS))
    for domain in domains:
        here = [c for c in curves if c["domain"] == domain]
        variants = sorted({c["codec"] for c in here if is_udic(c["codec"])}, key=lambda v: (v != "udic", v))
        for variant in variants:
            for name in TABLE_ANCHORS:
                for anchor in (c for c in here if c["codec"] == name):
                    subset = anchor.get("subset", "")
                    ours = next((c for c in here if c["codec"] == variant and c.get("subset", "") == subset), None)
                    if ours is None or not ours["psnr"]:
                        continue
                    rows.append({
                        "domain": domain, "udic": variant, "anchor": name, "subset": subset,
                        "images": anchor.get("images"), "targets": list(targets),
                        "ratios": [rate_ratio(ours, anchor, t) for t in targets],
                        "udic_top_psnr": max(ours["psnr"]), "anchor_top_psnr": max(anchor["psnr"]),
                        "udic_lossless_bpp": ours.get("lossless_bpp"),
                    })
    return rows


def equal_psnr_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    targets = rows[0]["targets"]
    subsets = sorted({r["subset"] for r in rows if r["subset"]})
    lines = ["## Bytes at equal PSNR: udic / anchor", "",
             "What a user asking for a given quality pays: udic's mean bpp divided by the anchor's at "
             "the same PSNR, each read off its own per-image-averaged curve (log-rate linear in PSNR "
             "between the two points around the target). Below 1 = udic is smaller; — = one of the two "
             "does not reach that PSNR. *top dB* is the highest PSNR each curve reaches; udic's also "
             "names the mean bpp at which it is lossless on every image, where a setting is.", ""]
    if subsets:
        lines += ["Rows whose anchor names a number of images compare on those images only, udic "
                  "measured on the same ones (" + "; ".join(subsets) + ").", ""]
    lines += ["| domain | udic | udic top dB | anchor | anchor top dB | " + " | ".join(f"{t:g} dB" for t in targets)
              + " |", "|---" * (5 + len(targets)) + "|"]
    for r in rows:
        anchor = r["anchor"] + (f" ({r['subset'].split(':')[0]})" if r["subset"] else "")
        cells = ["—" if v is None else f"{v:.2f}" for v in r["ratios"]]
        top = f"{r['udic_top_psnr']:.2f}"
        if r.get("udic_lossless_bpp") is not None:
            top += f", lossless at {r['udic_lossless_bpp']:.2f} bpp"
        lines.append(f"| {r['domain']} | {r['udic']} | {top} | {anchor} | "
                     f"{r['anchor_top_psnr']:.2f} | " + " | ".join(cells) + " |")
    return lines + [""]


def external_anchor_curves(folder: Path) -> tuple[list[dict], list[str]]:
    """Kodak curves of codecs measured outside the project (``*.json`` with ``results``
    rows: codec, image, q, bpp, psnr_rgb), averaged per QP over the images each
    file covers; a QP missing on any image is left out, as for measured anchors."""
    curves: list[dict] = []
    notes: list[str] = []
    for path in sorted(folder.glob("*.json")):
        try:
            results = json.loads(path.read_text())["results"]
            rows = [(str(r["codec"]), Path(str(r["image"])).stem, float(r["q"]), float(r["bpp"]), float(r["psnr_rgb"]))
                    for r in results]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            notes.append(f"{path.name}: not an anchor result file ({exc})")
            continue
        for codec in dict.fromkeys(r[0] for r in rows):
            if codec not in EXTERNAL_CODECS:
                continue
            mine = [r for r in rows if r[0] == codec]
            images = sorted({r[1] for r in mine})
            points = []
            for q in sorted({r[2] for r in mine}):
                at_q = [r for r in mine if r[2] == q]
                if {r[1] for r in at_q} != set(images) or len(at_q) != len(images):
                    notes.append(f"kodak: {EXTERNAL_CODECS[codec]} q={q:g} left out (not on every image)")
                    continue
                points.append((float(np.mean([r[3] for r in at_q])), float(np.mean([r[4] for r in at_q])), q))
            points.sort()
            curves.append({"domain": "kodak", "codec": EXTERNAL_CODECS[codec], "bpp": [p[0] for p in points],
                           "psnr": [p[1] for p in points], "qualities": [p[2] for p in points],
                           "images": len(images), "image_names": images,
                           "subset": f"{len(images)} images: " + ", ".join(images), "source": path.name})
    return curves, notes


def udic_subset_curves(points: list[RDPoint], domain: str, names: list[str]) -> tuple[list[dict], list[str]]:
    """udic's curves on the images ``names`` only (to set beside anchors measured on them)."""
    mine = [p for p in points if p.domain == domain and Path(p.file).stem in names]
    if {Path(p.file).stem for p in mine} != set(names):
        missing = sorted(set(names) - {Path(p.file).stem for p in mine})
        return [], [f"{domain}: no udic curve on the external anchors' images (not measured: {', '.join(missing)})"]
    curves, notes = average_curves(mine, {domain: len(names)})
    subset = f"{len(names)} images: " + ", ".join(sorted(names))
    return [{**asdict(c), "subset": subset} for c in curves], notes


# Sections written by tools.benchmarks.* (each re-runnable on its own), in report order.
SECTIONS = ("family", "adaptation", "huge", "robustness", "recipes", "training", "lossless", "startup")


def _training_summary(info: dict) -> str:
    """How the model was trained, from its weights' info (a LoRAM family names its base)."""
    if not info:
        return ""
    loram = info.get("loram")
    if loram:
        steps = int(loram.get("steps_per_rate") or 0) * len(loram.get("rates", []))
        hours = sum(loram.get("wall_per_rate", {}).values()) / 3600
        base = f" on base `{info['base_model']}`" if info.get("base_model") else ""
        return f", per-rate deltas trained {steps} steps in {hours:.2f} h{base} (docs/training.md)"
    return f", trained {info.get('steps', 0)} steps in {info.get('wall_seconds', 0) / 3600:.2f} h on this CPU"


def _content_choice_note(r: dict) -> str:
    """Which model the synthetic-looking images were coded with, where it is another model."""
    synthetic = r.get("synthetic_model")
    if not synthetic or synthetic == r["model"]["id"]:
        return ""
    return f"; from effort 1, images that look synthetic are coded with `{synthetic}`, as `udic encode` does"


def render_markdown(r: dict, plots: dict[str, str], sections: Path | None = None) -> str:
    lines = [
        "# udic benchmark report",
        "",
        f"Generated {r['generated']} on {r['machine']['cpu_count']} CPU cores "
        f"({r['machine']['torch_threads']} torch threads, torch {r['machine']['torch']}, no GPU).",
        f"Model `{r['model']['id']}` ({r['model']['file']}, {r['model']['bytes'] / 1e6:.1f} MB)"
        + _training_summary(r["model"]["info"])
        + ". udic is measured without per-image adaptation (`udic`, `--effort 0`) and at the efforts "
          "listed as `udic-eN`"
        + _content_choice_note(r)
        + ".",
        "",
        "bpp counts every byte of the .udic file (header, sections, checksums). PSNR is RGB, 8-bit, "
        "averaged per image; curves average bpp and PSNR per quality setting over a domain.",
        "",
    ]
    lines += udic_against_anchors(r["curves"])
    lines += equal_psnr_lines(equal_psnr_table(r["curves"] + r.get("extra_curves", [])))
    lines += per_image_lines(per_image_table(r.get("points", []), TABLE_ANCHORS, EQUAL_PSNR_DB))
    for name, rows in r["per_rate"].items():
        lines += [f"## {name} ({r['images'][name]} images): udic per rate", "",
                  "| effort | q | bpp | PSNR dB | MS-SSIM | encode s | decode s | MP |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in rows:
            lines.append(
                f"| {row.get('effort', 0)} | {row['quality']:g} | {row['bpp']:.4f} | {row['psnr']:.2f} | {_fmt(row['ms_ssim'], '.4f')} | "
                f"{row['encode_s']:.2f} | {row['decode_s']:.2f} | {row['megapixels']:.2f} |"
            )
        lines.append("")
        for label, key in (("JPEG", "bd_vs_jpeg"), ("HEVC (x265 4:4:4, BPG-equivalent)", "bd_vs_hevc")):
            rows_bd = [b for b in r[key] if b["domain"] == name]
            if rows_bd:
                lines += [f"BD-rate against {label} (negative = fewer bits than the anchor at equal PSNR):", "",
                          "| codec | BD-rate | BD-PSNR |", "|---|---|---|"]
                for b in rows_bd:
                    lines.append(f"| {b['codec']} | {_fmt(b['bd_rate'], '+.1f')} % | {_fmt(b['bd_psnr'], '+.2f')} dB |")
                lines.append("")
        if name in plots:
            lines += [f"![RD {name}]({plots[name]})", ""]
    if r.get("command"):
        lines += [f"RD tables made by `{r['command']}`.", ""]
    for name in SECTIONS:
        path = sections / f"{name}.md" if sections is not None else None
        if path is not None and path.exists():
            lines += [path.read_text().rstrip(), ""]
    if r["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in r["notes"]] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
