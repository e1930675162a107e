"""Training and evaluation images, held in memory as uint8 so crops are cheap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .synthetic import KINDS_BY_STYLE, synthetic_image

IMAGE_SUFFIXES = {".png", ".webp", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

# Fixed Kodak subset for the training harness: the same 6 images every time.
EVAL_KODAK = ("kodim01", "kodim04", "kodim07", "kodim14", "kodim20", "kodim23")


def default_data_root() -> Path:
    """``../shared/data`` next to the project checkout (overridable with UDIC_DATA)."""
    import os

    env = os.environ.get("UDIC_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path("../shared/data")


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"), dtype=np.uint8)  # writable: torch.from_numpy wants it


# "flip": a random left-right mirror (every run before session 38).  "dihedral": then a random
# quarter turn too, the 8 orientations of a crop.  With 256 px crops of the 256 px training
# images the crop's position never varies, so each image offered one or two views only.
# "scale": half the crops are cut from the image downscaled by a random factor in [1/2, 1)
# (a wider window, Lanczos-reduced to the crop): more detail per pixel than the training
# photos hold, as in sharp photos and drawn content, and more distinct crops per image.
AUGMENTS = ("flip", "dihedral", "scale")
SCALE_MIN = 0.5


class CropDataset:
    """All training images in RAM; random crops and flips from a seeded generator.

    Batches are a pure function of (seed, step, stream), which makes resume exact;
    each rank of a distributed run draws from its own stream (0 is the single-process one).
    """

    def __init__(self, folder: Path, min_size: int = 64, synthetic: float = 0.0, synthetic_pool: int = 0,
                 pool_size: int = 256, pool_seed: int = 0, synthetic_style: int = 1,
                 augment: str = "flip") -> None:
        images = [load_rgb(p) for p in list_images(folder)]
        images = [im for im in images if im.shape[0] >= min_size and im.shape[1] >= min_size]
        if not images:
            raise FileNotFoundError(f"no training images in {folder}")
        if not 0.0 <= synthetic <= 1.0:
            raise ValueError(f"synthetic must be a fraction in [0, 1], got {synthetic}")
        self.images = images
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        self.augment = augment
        if synthetic_style not in KINDS_BY_STYLE:
            raise ValueError(f"synthetic_style must be one of {sorted(KINDS_BY_STYLE)}, got {synthetic_style}")
        self.synthetic = synthetic  # the share of a batch drawn procedurally (train/synthetic.py)
        self.style = synthetic_style  # which kinds it draws (synthetic.KINDS_BY_STYLE)
        # Drawing a synthetic image costs ~4-7 ms of one CPU core, as long as an accelerator's
        # whole training step: a run that sets a pool draws its synthetic crops from that many
        # images made once, in parallel, at the start (the images are a function of pool_seed).
        self.pool = synthetic_pool_images(synthetic_pool, pool_size, pool_seed, style=synthetic_style) \
            if synthetic and synthetic_pool else []

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, seed: int, step: int, batch_size: int, crop: int, stream: int = 0) -> torch.Tensor:
        """(B, 3, crop, crop) floats in [0, 1]."""
        return self.batch_uint8(seed, step, batch_size, crop, stream).float().div_(255.0)

    def batch_uint8(self, seed: int, step: int, batch_size: int, crop: int, stream: int = 0) -> torch.Tensor:
        """The same batch as uint8 (B, 3, crop, crop): a quarter of the bytes to move to a GPU."""
        g = np.random.default_rng([seed, step] if stream == 0 else [seed, step, stream])
        out = np.empty((batch_size, crop, crop, 3), dtype=np.uint8)
        for i in range(batch_size):
            # Only a run that asked for synthetic images draws for them: old recipes keep their batches.
            if self.synthetic > 0.0 and g.random() < self.synthetic:
                if not self.pool:
                    out[i] = synthetic_image(g, crop, self.style)
                    continue
                im = self.pool[int(g.integers(len(self.pool)))]
            else:
                im = self.images[int(g.integers(len(self.images)))]
            h, w = im.shape[:2]
            c = min(crop, h, w)
            window = c
            if self.augment == "scale" and c == crop and g.random() < 0.5:
                # the window a downscale by s would turn into the crop, as large as the image allows
                window = min(int(round(crop / g.uniform(SCALE_MIN, 1.0))), h, w)
            y0 = int(g.integers(h - window + 1))
            x0 = int(g.integers(w - window + 1))
            patch = im[y0 : y0 + window, x0 : x0 + window]
            if window != c:
                patch = np.asarray(Image.fromarray(patch).resize((c, c), Image.Resampling.LANCZOS))
            if g.random() < 0.5:
                patch = patch[:, ::-1]
            if self.augment == "dihedral":  # drawn only when asked: "flip" runs keep their batches
                patch = np.rot90(patch, int(g.integers(4)))
            if c < crop:
                patch = np.pad(patch, ((0, crop - c), (0, crop - c), (0, 0)), mode="edge")
            out[i] = patch
        return torch.from_numpy(out).permute(0, 3, 1, 2)

    def random_patches(self, seed: int, count: int, size: int) -> torch.Tensor:
        """Flattened (count, 3·size·size) patches for initialising the block transform."""
        g = np.random.default_rng([seed, 10**9])
        rows = []
        for _ in range(count):
            im = self.images[int(g.integers(len(self.images)))]
            h, w = im.shape[:2]
            y0 = int(g.integers(h - size + 1))
            x0 = int(g.integers(w - size + 1))
            rows.append(im[y0 : y0 + size, x0 : x0 + size].transpose(2, 0, 1).reshape(-1))
        return torch.from_numpy(np.stack(rows)).float().div_(255.0)


def _pool_image(args: tuple[int, int, int, int]) -> np.ndarray:
    seed, index, size, style = args
    return synthetic_image(np.random.default_rng([seed, 10**8, index]), size, style)


def synthetic_pool_images(count: int, size: int, seed: int, workers: int | None = None,
                          style: int = 1) -> list[np.ndarray]:
    """``count`` synthetic (size, size, 3) images, image i a function of (seed, i) alone, so the
    pool is the same whatever the number of worker processes."""
    import os

    jobs = [(seed, i, size, style) for i in range(count)]
    workers = min(count, workers if workers is not None else min(16, os.cpu_count() or 1))
    if workers <= 1 or count < 64:
        return [_pool_image(job) for job in jobs]
    import multiprocessing

    # fork: the workers need no CUDA and no re-import; they only run numpy and Pillow
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(_pool_image, jobs, chunksize=max(1, count // (4 * workers)))


def load_eval_images(kodak: Path, names: tuple[str, ...] = EVAL_KODAK) -> list[torch.Tensor]:
    out = []
    for name in names:
        arr = load_rgb(kodak / f"{name}.png")
        out.append(torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)[None])
    return out
