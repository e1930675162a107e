"""Measure a checkpoint the way users see it: real .udic files on the fixed Kodak subset.

``python -m udic.train.evaluate runs/base/last.pt [--images all]`` prints, per rate,
the mean bpp of the actual files (every byte counted) and the PSNR of the actual
decode, plus BD-rate against JPEG (Pillow/libjpeg, 4:2:0) on the same images.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import hub, modelfile
from ..codec import Codec
from ..imageio import LoadedImage
from ..metrics import bd_rate, psnr_rgb
from .data import EVAL_KODAK, default_data_root, list_images, load_rgb


def coded_rd(codec: Codec, images: list[np.ndarray], qualities: list[float]) -> list[dict]:
    rows = []
    for q in qualities:
        bpp, psnr = [], []
        for rgb in images:
            enc = codec.encode(LoadedImage(rgb=rgb, mode="RGB", alpha=None, icc=None), q)
            out = np.asarray(codec.decode(enc.data).image)
            bpp.append(enc.bpp)
            psnr.append(psnr_rgb(rgb, out))
        rows.append({"quality": q, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr))})
    return rows


def jpeg_rd(images: list[np.ndarray], qualities: tuple[int, ...] = (5, 10, 20, 35, 50, 70, 85, 95)) -> list[dict]:
    rows = []
    for q in qualities:
        bpp, psnr = [], []
        for rgb in images:
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format="JPEG", quality=q)
            out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            bpp.append(8 * len(buf.getvalue()) / (rgb.shape[0] * rgb.shape[1]))
            psnr.append(psnr_rgb(rgb, out))
        rows.append({"quality": q, "bpp": float(np.mean(bpp)), "psnr": float(np.mean(psnr))})
    return rows


def codec_from_checkpoint(ckpt: Path, fp16: bool = True) -> Codec:
    from .export import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    data = modelfile.export_bytes(model, fp16=fp16)
    weights = modelfile.load_bytes(data)
    return Codec(weights, hub.model_id_for_bytes(data))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m udic.train.evaluate", description=__doc__)
    p.add_argument("model", help="a training checkpoint (.pt) or a weights file (.safetensors)")
    p.add_argument("--images", default="subset", help="'subset' (6 fixed Kodak images) or 'all'")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fp32", action="store_true", help="evaluate fp32 weights instead of the fp16 export")
    p.add_argument("--json", dest="json_out", type=Path, default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    kodak = default_data_root() / "kodak"
    paths = list_images(kodak) if a.images == "all" else [kodak / f"{n}.png" for n in EVAL_KODAK]
    images = [load_rgb(pth) for pth in paths]
    path = Path(a.model)
    if path.suffix == ".pt":
        codec = codec_from_checkpoint(path, fp16=not a.fp32)
    else:
        codec = Codec(modelfile.load(path), hub.model_id_for_file(path))
    qualities = [float(q) for q in range(codec.config.num_rates)]
    ours = coded_rd(codec, images, qualities)
    jpeg = jpeg_rd(images)
    try:
        bd = bd_rate([r["bpp"] for r in jpeg], [r["psnr"] for r in jpeg],
                     [r["bpp"] for r in ours], [r["psnr"] for r in ours])
    except ValueError as exc:
        bd = math.nan
        print(f"BD-rate unavailable: {exc}", file=sys.stderr)
    for r in ours:
        print(f"q{r['quality']:g}: {r['bpp']:.4f} bpp  {r['psnr']:.2f} dB")
    print(f"BD-rate vs JPEG on {len(images)} Kodak images: {bd:+.1f} %")
    if a.json_out:
        a.json_out.write_text(json.dumps({"udic": ours, "jpeg": jpeg, "bd_rate_vs_jpeg": bd}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
