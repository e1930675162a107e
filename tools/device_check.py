"""Exact decoding across devices, checked on a lent accelerator (docs/architecture.md, "Exactness").

udic promises identical latent integers on any device: a file encoded on the CPU decodes on
CUDA (its integer checksum passes) and a file encoded on CUDA decodes on the CPU.  Pixels
may differ across devices by the synthesis' float rounding; how much is measured here.
No test can check this without a GPU, so a session that draws one runs:

``python -m tools.device_check prepare``   (here) ``.device/check/``: a few images and the
                                          files the CPU encodes from them (the default and
                                          the high-fidelity model, effort 0 and 1, one tiled),
                                          the CPU's decoded pixels' hashes and PSNRs, and
                                          the two models' weights (the hub reads them there)
``python -m tools.device_check run --out DIR --device cuda``   (there) decode every file
                                          on the device, encode every image there, write a
                                          report and the device's files to DIR
``python -m tools.device_check verify DIR``   (here) decode the device's files on the CPU

``run`` works with ``--device cpu`` too: that is how it is rehearsed, and what its test runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / ".device" / "check"
# (source, crop box or None, model: "default" / "hifi", -q, effort, tile)
CASES = (
    ("kodak/kodim04.png", (0, 0, 256, 256), "default", 3.0, 0, None),
    ("kodak/kodim04.png", (0, 0, 256, 256), "default", 5.0, 1, None),
    ("kodak/kodim23.png", (128, 128, 448, 384), "hifi", 6.5, 0, None),
    ("kodak/kodim23.png", (128, 128, 448, 384), "hifi", 7.0, 1, None),
    ("ood/comic/" + "{comic}", (0, 0, 320, 256), "default", 2.0, 1, None),
    ("kodak/kodim14.png", None, "default", 4.0, 0, 256),
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _pixels_sha(image) -> str:  # noqa: ANN001 - a PIL image
    import numpy as np

    return _sha(np.ascontiguousarray(np.asarray(image.convert("RGB"))).tobytes())


def _models() -> dict[str, str]:
    from udic import hub
    from udic.modelchoice import HIGH_FIDELITY_MODEL

    default = hub.resolve(None, allow_download=False).entry.id
    return {"default": default, "hifi": HIGH_FIDELITY_MODEL}


def cmd_prepare(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from udic import api, hub
    from udic.metrics import psnr_rgb
    from udic.train.data import default_data_root

    data = Path(args.data) if args.data else default_data_root()
    if CHECK.exists():
        shutil.rmtree(CHECK)
    (CHECK / "weights").mkdir(parents=True)
    models = _models()
    for model_id in models.values():
        src = hub.resolve(model_id, allow_download=False).path
        shutil.copy2(src, CHECK / "weights" / src.name)
    comic = sorted((data / "ood" / "comic").glob("*.png"))[0].name
    cases = []
    for n, (rel, box, which, q, effort, tile) in enumerate(CASES):
        path = data / rel.format(comic=comic)
        with Image.open(path) as im:
            im = im.convert("RGB")
            if box is not None:
                im = im.crop(box)
            source = CHECK / f"src{n}.png"
            im.save(source)
        rgb = np.asarray(Image.open(source).convert("RGB"))
        enc = api.encode_image(str(source), quality=q, model=models[which], effort=effort, tile=tile,
                               progress=False, choose_mode=False)
        (CHECK / f"cpu{n}.udic").write_bytes(enc.data)
        dec = api.decode(enc.data, progress=False)
        cases.append({"source": source.name, "file": f"cpu{n}.udic", "model": models[which], "quality": q,
                      "effort": effort, "tile": tile, "bytes": len(enc.data), "file_sha": _sha(enc.data),
                      "cpu_pixels_sha": _pixels_sha(dec.image),
                      "cpu_psnr": round(psnr_rgb(rgb, np.asarray(dec.image.convert("RGB"))), 4)})
    (CHECK / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    size = sum(p.stat().st_size for p in CHECK.rglob("*") if p.is_file())
    print(f"{len(cases)} cases, {size / 2**20:.1f} MiB in {CHECK}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Decode the CPU's files on ``--device`` and encode the sources there."""
    os.environ["UDIC_CACHE_DIR"] = str(CHECK / "weights")
    import numpy as np
    import torch
    from PIL import Image

    from udic import api
    from udic.metrics import psnr_rgb

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = json.loads((CHECK / "cases.json").read_text())
    device = args.device
    report: dict = {"device": device, "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None, "cases": []}
    failures = 0
    for n, case in enumerate(cases):
        rgb = np.asarray(Image.open(CHECK / case["source"]).convert("RGB"))
        data = (CHECK / case["file"]).read_bytes()
        row = dict(case)
        try:
            t0 = time.perf_counter()
            dec = api.decode(data, device=device, progress=False)
            row["device_decode_s"] = round(time.perf_counter() - t0, 3)
            arr = np.asarray(dec.image.convert("RGB"))
            row["decoded"] = True  # the integer checksum passed: the same latents as the CPU's
            row["device_pixels_sha"] = _pixels_sha(dec.image)
            row["same_pixels_as_cpu"] = row["device_pixels_sha"] == case["cpu_pixels_sha"]
            row["device_psnr"] = round(psnr_rgb(rgb, arr), 4)
            again = api.decode(data, device=device, progress=False)
            row["repeatable"] = _pixels_sha(again.image) == row["device_pixels_sha"]
        except Exception as exc:  # noqa: BLE001 - every failure is a finding to report
            row["decoded"] = False
            row["error"] = f"{type(exc).__name__}: {exc}"
            failures += 1
        try:
            t0 = time.perf_counter()
            enc = api.encode_image(str(CHECK / case["source"]), quality=case["quality"], model=case["model"],
                                   device=device, effort=case["effort"], tile=case["tile"], progress=False,
                                   choose_mode=False)
            row["device_encode_s"] = round(time.perf_counter() - t0, 3)
            (out / f"dev{n}.udic").write_bytes(enc.data)
            row["device_file_sha"] = _sha(enc.data)
            row["same_file_as_cpu"] = row["device_file_sha"] == case["file_sha"]
            row["device_bytes"] = len(enc.data)
        except Exception as exc:  # noqa: BLE001
            row["encode_error"] = f"{type(exc).__name__}: {exc}"
            failures += 1
        report["cases"].append(row)
        print(json.dumps(row), flush=True)
    report["failures"] = failures
    (out / "device_check.json").write_text(json.dumps(report, indent=1) + "\n")
    return 1 if failures else 0


def cmd_verify(args: argparse.Namespace) -> int:
    """The device's files decode here (their integer checksum passes on the CPU)."""
    import numpy as np
    from PIL import Image

    from udic import api
    from udic.metrics import psnr_rgb

    folder = Path(args.dir)
    report = json.loads((folder / "device_check.json").read_text())
    failures = 0
    for n, row in enumerate(report["cases"]):
        path = folder / f"dev{n}.udic"
        if not path.exists():
            print(f"case {n}: no device file ({row.get('encode_error', 'missing')})")
            failures += 1
            continue
        rgb = np.asarray(Image.open(CHECK / row["source"]).convert("RGB"))
        try:
            dec = api.decode(path.read_bytes(), progress=False)
        except Exception as exc:  # noqa: BLE001
            print(f"case {n}: the device's file does not decode on the CPU: {exc}")
            failures += 1
            continue
        row["cpu_decode_of_device_file_psnr"] = round(psnr_rgb(rgb, np.asarray(dec.image.convert("RGB"))), 4)
        print(json.dumps({k: row.get(k) for k in ("source", "model", "quality", "effort", "tile", "decoded",
                                                  "same_pixels_as_cpu", "cpu_psnr", "device_psnr", "repeatable",
                                                  "same_file_as_cpu", "bytes", "device_bytes",
                                                  "cpu_decode_of_device_file_psnr", "device_decode_s",
                                                  "device_encode_s", "error")}))
    (folder / "verified.json").write_text(json.dumps(report, indent=1) + "\n")
    print("OK" if failures == 0 and report["failures"] == 0 else f"{failures + report['failures']} failures")
    return 1 if failures or report["failures"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data", default="")
    p = sub.add_parser("run")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p = sub.add_parser("verify")
    p.add_argument("dir")
    args = parser.parse_args(argv)
    return {"prepare": cmd_prepare, "run": cmd_run, "verify": cmd_verify}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
