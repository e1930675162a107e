"""Bytes at equal PSNR, image by image: what a user asking one image for a quality pays.

Why a second table beside the curve-based one in ``tools.bench``: a domain's mean curve
drops every setting at which one image came out lossless (its PSNR is infinite), and udic's
mode choice makes synthetic images lossless or near-lossless at most settings, so on those
domains the mean curves hardly overlap and the comparison says "—" exactly where a user
wants an answer.  Here each image is read off its own curve: the bytes of the cheapest file
that reaches the target (log-rate linear in PSNR between the two measured files around it; a
lossless file reaches every target), then the per-image ratios udic/anchor are averaged
geometrically over the images where both codecs reach it, and the count is shown.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import PurePath

TARGETS_DB = (30.0, 34.0, 38.0, 42.0)


def bytes_to_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """Bytes one image needs on one codec to reach ``target`` dB; None if no file does.

    ``points`` are (bytes, PSNR) of its files (PSNR may be inf: lossless).  Files that do not
    raise PSNR over a cheaper one are dropped.  When the cheapest file already reaches the
    target, its bytes are the answer (the codec offers nothing cheaper); between two files
    the log of the bytes is linear in PSNR; the step to a lossless file is not interpolated.
    """
    hull: list[tuple[float, float]] = []
    for b, q in sorted(points):
        if b > 0 and not math.isnan(q) and (not hull or q > hull[-1][1]):
            hull.append((b, q))
    for i, (b, q) in enumerate(hull):
        if q < target:
            continue
        if i == 0 or math.isinf(q):
            return b
        b0, q0 = hull[i - 1]
        w = (target - q0) / (q - q0)
        return 10 ** ((1 - w) * math.log10(b0) + w * math.log10(b))
    return None


def is_udic(codec: str) -> bool:
    """A udic curve: "udic" (effort 0) or "udic-eN"."""
    return codec == "udic" or codec.startswith("udic-e")


def per_image_table(points: list[dict], anchors: tuple[str, ...],
                    targets: tuple[float, ...] = TARGETS_DB) -> list[dict]:
    """Rows per domain, udic variant and anchor: per target the geometric mean of the per-image
    byte ratios udic/anchor, the images both reach it on, and how many each reaches it on.

    ``points``: dicts with domain, codec, image (a path or name), bytes, psnr and optionally ok.
    """
    files: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for p in points:
        if p.get("ok", True):
            files[(p["domain"], p["codec"])][PurePath(p["image"]).name].append((float(p["bytes"]), float(p["psnr"])))
    rows = []
    domains = list(dict.fromkeys(d for d, _ in files))
    for domain in domains:
        variants = sorted((c for d, c in files if d == domain and is_udic(c)), key=lambda v: (v != "udic", v))
        for variant in variants:
            ours = files[(domain, variant)]
            for anchor in anchors:
                theirs = files.get((domain, anchor))
                if not theirs:
                    continue
                images = sorted(set(ours) & set(theirs))
                if not images:
                    continue
                cells = []
                for t in targets:
                    a = {im: bytes_to_reach(ours[im], t) for im in images}
                    b = {im: bytes_to_reach(theirs[im], t) for im in images}
                    both = [im for im in images if a[im] is not None and b[im] is not None]
                    ratio = (math.exp(sum(math.log(a[im] / b[im]) for im in both) / len(both)) if both else None)
                    cells.append({"target": t, "ratio": ratio, "both": len(both),
                                  "udic_reaches": sum(v is not None for v in a.values()),
                                  "anchor_reaches": sum(v is not None for v in b.values())})
                rows.append({"domain": domain, "udic": variant, "anchor": anchor, "images": len(images),
                             "cells": cells})
    return rows


def per_image_lines(rows: list[dict]) -> list[str]:
    """The markdown section of ``per_image_table``'s rows."""
    if not rows:
        return []
    targets = [c["target"] for c in rows[0]["cells"]]
    lines = ["## Bytes at equal PSNR, image by image: udic / anchor", "",
             "Each image read off its own curve (the cheapest file reaching the target; log-rate linear in "
             "PSNR between two files; a lossless file reaches every target), then the geometric mean of the "
             "per-image ratios over the images where both reach the target, with their count (*both / "
             "images*, then in brackets how many udic and the anchor reach it on). Below 1 = udic is "
             "smaller. Unlike the table above, lossless and near-lossless files count here.", "",
             "| domain | udic | anchor | " + " | ".join(f"{t:g} dB" for t in targets) + " |",
             "|---" * (3 + len(targets)) + "|"]
    for r in rows:
        cells = []
        for c in r["cells"]:
            count = f"{c['both']}/{r['images']}"
            reach = f" ({c['udic_reaches']}, {c['anchor_reaches']})" if c["both"] < r["images"] else ""
            cells.append(("—" if c["ratio"] is None else f"{c['ratio']:.2f}") + f" · {count}{reach}")
        lines.append(f"| {r['domain']} | {r['udic']} | {r['anchor']} | " + " | ".join(cells) + " |")
    return lines + [""]
