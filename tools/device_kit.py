"""Getting a training run onto a lent accelerator and its weights back (docs/training.md).

A session that draws the device machine has 15 minutes of it, one command at a time, a
working tree of at most 64 MiB that travels without ``../shared``, and at most 8 files of
16 MiB each coming back.  Everything that can go wrong with that is settled here, on CPU,
beforehand:

``python -m tools.device_kit pack``        the training pack in ``.device/`` (git-ignored,
                                           named in ``carry``): training images within a size
                                           budget, the 6 harness Kodak images, the wheels the
                                           machine lacks (constriction)
``python -m tools.device_kit size``        what would travel: the tree plus the pack, in MiB
``python -m tools.device_kit aside``       move the packaged weights out of the tree (training
                                           needs none; 27 models are 171 MB) …
``python -m tools.device_kit restore``     … and back
``python -m tools.device_kit split CKPT DIR``  (on the machine) the run's model, without its
                                           optimiser state, in parts under 15 MiB
``python -m tools.device_kit join DIR -o OUT.pt``  (here) the parts as one checkpoint for
                                           ``--init-from``, ``udic.train.lora --base`` and
                                           ``udic.train.export``

``tools/device_train.sh MINUTES`` is the command the machine runs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / ".device"
ASIDE = ROOT / ".device-aside"
WEIGHTS = ROOT / "src" / "udic" / "weights"
TREE_LIMIT_MIB = 64.0
PART_MIB = 15.0  # files back are at most 16 MiB each
MAX_PARTS = 4  # 8 files back in all: the parts, their manifest, train.log, train_log.csv, eval_log.csv
FILES_BACK = MAX_PARTS + 4
HARNESS_KODAK = ("kodim01", "kodim04", "kodim07", "kodim14", "kodim20", "kodim23")
WHEELS = ("constriction",)  # what udic.train needs that the machine's image lacks
WHEEL_PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64")
MACHINE_PYTHON = "3.12"


def _mib(n: int) -> float:
    return n / 2**20


def _encoded(path: Path, lossless: bool, jpeg_quality: int = 90) -> tuple[bytes, str]:
    """One training image as lossless WebP (as stored) or as 4:4:4 JPEG."""
    from PIL import Image

    if lossless and path.suffix.lower() in (".webp", ".png"):
        return path.read_bytes(), path.suffix.lower()
    buf = io.BytesIO()
    with Image.open(path) as im:
        im.convert("RGB").save(buf, format="JPEG", quality=jpeg_quality, subsampling=0)
    return buf.getvalue(), ".jpg"


def pack_training_images(src: Path, dest: Path, budget_mib: float, lossless_share: float, jpeg_quality: int = 90,
                         seed: int = 0) -> dict:
    """Fill ``dest`` with training images within ``budget_mib``.

    Why two formats: the 2,084 crops are 149 MiB as lossless WebP, over the budget.  A
    random ``lossless_share`` of the budget keeps exact images (what the top rates must
    learn to reproduce); the rest holds as many others as fit as 4:4:4 JPEG (q90: about
    1,250 more images, artifacts near 40 dB), so a run of many epochs sees more scenes.
    """
    from udic.train.data import list_images

    files = list_images(src)
    if not files:
        raise SystemExit(f"{src}: no training images")
    random.Random(seed).shuffle(files)
    dest.mkdir(parents=True, exist_ok=True)
    budget = int(budget_mib * 2**20)
    exact_budget = int(budget * lossless_share)
    used = 0
    counts = {"lossless": 0, "jpeg": 0, "skipped": 0}
    for path in files:
        if budget - used < 8 * 1024:  # full: no image is this small
            counts["skipped"] += 1
            continue
        exact = used < exact_budget and path.suffix.lower() in (".webp", ".png")
        data, suffix = _encoded(path, exact, jpeg_quality)
        if used + len(data) > (exact_budget if exact else budget):
            if exact:  # this image does not fit the exact share: try it as JPEG
                data, suffix = _encoded(path, False, jpeg_quality)
                exact = False
            if used + len(data) > budget:
                counts["skipped"] += 1
                continue
        (dest / (path.name + suffix)).write_bytes(data)  # the full name: stems may repeat
        used += len(data)
        counts["lossless" if exact else "jpeg"] += 1
    return {"images": counts, "mib": round(_mib(used), 2)}


def download_wheels(dest: Path) -> list[str]:
    """The machine's Python 3.12 wheels of what it lacks (pip reaches the registries here)."""
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [a for p in WHEEL_PLATFORMS for a in ("--platform", p)]
    for name in WHEELS:
        version = _installed_version(name)
        spec = f"{name}=={version}" if version else name
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", MACHINE_PYTHON, "--implementation", "cp", *platforms,
                        "-d", str(dest), spec], check=True)
    return sorted(p.name for p in dest.glob("*.whl"))


def _installed_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cmd_pack(args: argparse.Namespace) -> int:
    data = Path(args.data) if args.data else _data_root()
    if PACK.exists():
        shutil.rmtree(PACK)
    summary = {"train": pack_training_images(data / "train", PACK / "train", args.budget_mib, args.lossless_share,
                                             args.jpeg_quality)}
    kodak = PACK / "kodak"
    kodak.mkdir(parents=True)
    for name in HARNESS_KODAK:
        shutil.copy2(data / "kodak" / f"{name}.png", kodak / f"{name}.png")
    summary["wheels"] = [] if args.no_wheels else download_wheels(PACK / "wheels")
    (PACK / "pack.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    cmd_size(args)  # (informative here: the weights are still in the tree until `aside`)
    return 0


def _data_root() -> Path:
    from udic.train.data import default_data_root

    return default_data_root()


def travelling_bytes() -> tuple[int, int]:
    """(tree, pack): tracked files present plus untracked files git does not ignore, and
    ``.device``, which ``carry`` names."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    tree = 0
    for name in out.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file():
            tree += path.stat().st_size
    pack = sum(p.stat().st_size for p in PACK.rglob("*") if p.is_file()) if PACK.exists() else 0
    return tree, pack


def cmd_size(args: argparse.Namespace) -> int:
    tree, pack = travelling_bytes()
    total = _mib(tree + pack)
    fits = total <= TREE_LIMIT_MIB
    print(f"tree {_mib(tree):.1f} MiB + .device {_mib(pack):.1f} MiB = {total:.1f} MiB "
          f"({'fits' if fits else 'over'} the {TREE_LIMIT_MIB:.0f} MiB limit"
          f"{'' if fits or ASIDE.exists() else '; python -m tools.device_kit aside moves the weights out'})")
    if ASIDE.exists():
        print(f"the packaged weights are in {ASIDE.name}/: run python -m tools.device_kit restore before "
              "testing or committing (git sees them as deleted)")
    return 0 if fits else 1


def _tracked_weights() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "--", str(WEIGHTS.relative_to(ROOT))], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return [ROOT / n for n in out.decode().split("\0") if n.endswith(".safetensors") and (ROOT / n).is_file()]


def cmd_aside(args: argparse.Namespace) -> int:
    """Only committed weights move (an uncommitted export stays where it is and travels), and
    nothing is overwritten in either direction."""
    paths = _tracked_weights()
    clash = [p.name for p in paths if (ASIDE / p.name).exists()]
    if clash:
        print(f"{ASIDE.name}/ already holds {clash[0]}: restore first", file=sys.stderr)
        return 1
    ASIDE.mkdir(exist_ok=True)
    for path in paths:
        shutil.move(str(path), ASIDE / path.name)
    print(f"moved {len(paths)} weights files to {ASIDE.name}/; put them back with: python -m tools.device_kit restore")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    if not ASIDE.exists():
        print("nothing to restore")
        return 0
    paths = sorted(ASIDE.glob("*.safetensors"))
    clash = [p.name for p in paths if (WEIGHTS / p.name).exists()]
    if clash:
        print(f"{WEIGHTS.relative_to(ROOT)}/{clash[0]} exists: not overwritten; compare and move it by hand",
              file=sys.stderr)
        return 1
    for path in paths:
        shutil.move(str(path), WEIGHTS / path.name)
    if not any(ASIDE.iterdir()):
        ASIDE.rmdir()
    print(f"{len(paths)} weights files restored")
    return 0


def split_checkpoint(ckpt: Path, dest: Path, part_mib: float = PART_MIB) -> list[Path]:
    """The checkpoint's model (fp32, no optimiser state) in parts of at most ``part_mib``,
    plus ``parts.json`` with each part's sha256 so ``join`` can refuse a broken transfer."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    slim = {k: state[k] for k in ("model", "model_config", "train_config", "recipe", "step", "wall") if k in state}
    buf = io.BytesIO()
    torch.save(slim, buf)
    blob = buf.getvalue()
    size = int(part_mib * 2**20)
    chunks = [blob[i : i + size] for i in range(0, len(blob), size)]
    if len(chunks) > MAX_PARTS:
        raise SystemExit(f"{ckpt}: the model is {_mib(len(blob)):.0f} MiB, more than {MAX_PARTS} parts of {part_mib} MiB")
    dest.mkdir(parents=True, exist_ok=True)
    stem = ckpt.parent.name or "model"
    paths = []
    for i, chunk in enumerate(chunks):
        path = dest / f"{stem}.part{i}"
        path.write_bytes(chunk)
        paths.append(path)
    manifest = {"parts": [p.name for p in paths], "sha256": hashlib.sha256(blob).hexdigest(),
                "step": slim.get("step"), "wall": slim.get("wall")}
    (dest / f"{stem}.parts.json").write_text(json.dumps(manifest) + "\n")
    return paths


def join_checkpoint(folder: Path, out: Path) -> dict:
    manifests = sorted(folder.glob("*.parts.json"))
    if len(manifests) != 1:
        raise SystemExit(f"{folder}: expected one *.parts.json, found {len(manifests)}")
    manifest = json.loads(manifests[0].read_text())
    blob = b"".join((folder / name).read_bytes() for name in manifest["parts"])
    if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise SystemExit(f"{folder}: the parts do not match their sha256 (a transfer broke off?)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(out)
    return manifest


def cmd_split(args: argparse.Namespace) -> int:
    paths = split_checkpoint(Path(args.ckpt), Path(args.dest), args.part_mib)
    print(f"{len(paths)} parts in {args.dest}")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    manifest = join_checkpoint(Path(args.folder), Path(args.out))
    print(f"{args.out}: step {manifest.get('step')}, {float(manifest.get('wall') or 0) / 60:.1f} min of training")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.device_kit", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="build .device/: training images, harness Kodak images, wheels")
    p.add_argument("--data", default="", help="the shared data folder (default: ../shared/data or UDIC_DATA)")
    p.add_argument("--budget-mib", type=float, default=36.0, help="training images, in MiB (default 36)")
    p.add_argument("--lossless-share", type=float, default=0.25, help="share of the budget kept exact (default 0.25)")
    p.add_argument("--jpeg-quality", type=int, default=90, help="the other images' JPEG quality, 4:4:4 (default 90)")
    p.add_argument("--no-wheels", action="store_true", help="skip the wheel download (tests, offline)")
    p.set_defaults(func=cmd_pack)
    sub.add_parser("size", help="what would travel, against the 64 MiB limit").set_defaults(func=cmd_size)
    sub.add_parser("aside", help="move the packaged weights out of the tree").set_defaults(func=cmd_aside)
    sub.add_parser("restore", help="move them back").set_defaults(func=cmd_restore)
    p = sub.add_parser("split", help="a checkpoint's model in parts that can come back through $OUT")
    p.add_argument("ckpt")
    p.add_argument("dest")
    p.add_argument("--part-mib", type=float, default=PART_MIB)
    p.set_defaults(func=cmd_split)
    p = sub.add_parser("join", help="the parts as one checkpoint")
    p.add_argument("folder")
    p.add_argument("-o", "--out", required=True)
    p.set_defaults(func=cmd_join)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
