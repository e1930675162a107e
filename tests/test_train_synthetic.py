"""Procedural synthetic training images and their share of a batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from udic.train import synthetic
from udic.train.data import CropDataset
from udic.train.loop import TrainConfig
from udic.train.options import recipe_toml


def _colours(img: np.ndarray) -> int:
    return len(np.unique(img.reshape(-1, 3), axis=0))


def test_images_are_a_function_of_the_generator() -> None:
    a = synthetic.synthetic_image(np.random.default_rng([4, 2]), 96)
    b = synthetic.synthetic_image(np.random.default_rng([4, 2]), 96)
    c = synthetic.synthetic_image(np.random.default_rng([4, 3]), 96)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_every_kind_draws_structured_content(kind: str, monkeypatch) -> None:
    """Each kind shows up, has more than one colour, and far fewer colours than pixels
    (flat regions: what the natural training set lacks)."""
    monkeypatch.setitem(synthetic.KINDS_BY_STYLE, 1, (kind,))
    images = [synthetic.synthetic_image(np.random.default_rng([kind.encode()[0], i]), 128) for i in range(6)]
    counts = [_colours(im) for im in images]
    assert all(im.shape == (128, 128, 3) for im in images)
    assert max(counts) > 1
    assert np.median(counts) < 128 * 128 / 8


def test_soft_vector_art_is_smooth_and_many_coloured(monkeypatch) -> None:
    """Style 2's "soft" kind: gradients (hundreds of colours, unlike the flat kinds) whose
    neighbouring pixels mostly differ by a step or two, with edges between shapes."""
    monkeypatch.setitem(synthetic.KINDS_BY_STYLE, 2, ("soft",))
    for i in range(6):
        im = synthetic.synthetic_image(np.random.default_rng([5, i]), 96, style=2).astype(np.int64)
        assert im.shape == (96, 96, 3)
        assert _colours(im.astype(np.uint8)) > 200
        step = np.abs(np.diff(im, axis=1)).max(axis=2)
        assert np.median(step) <= 2 and step.max() > 20


def test_style_1_draws_what_it_always_drew_and_styles_are_checked(noise_train_dir: Path) -> None:
    for i in range(12):
        a = synthetic.synthetic_image(np.random.default_rng([6, i]), 64)
        np.testing.assert_array_equal(a, synthetic.synthetic_image(np.random.default_rng([6, i]), 64, style=1))
    kinds = synthetic.KINDS_BY_STYLE
    assert kinds[1] == synthetic.KINDS and set(kinds[2]) == set(kinds[1]) | {"soft"}
    one = CropDataset(noise_train_dir, synthetic=1.0).batch_uint8(3, 1, 24, 32)
    two = CropDataset(noise_train_dir, synthetic=1.0, synthetic_style=2).batch_uint8(3, 1, 24, 32)
    assert not torch.equal(one, two)
    with pytest.raises(ValueError, match="synthetic_style"):
        CropDataset(noise_train_dir, synthetic=0.5, synthetic_style=3)
    from udic.train.options import recipe_toml

    assert "synthetic_style = 2" in recipe_toml(TrainConfig(synthetic_style=2)).splitlines()


def test_batch_share_of_synthetic_images(noise_train_dir: Path) -> None:
    natural = CropDataset(noise_train_dir)
    mixed = CropDataset(noise_train_dir, synthetic=0.5)
    everything = CropDataset(noise_train_dir, synthetic=1.0)
    # synthetic = 0 draws exactly what a run without the option drew (old recipes resume exactly)
    assert torch.equal(natural.batch(1, 5, 4, 48), CropDataset(noise_train_dir, synthetic=0.0).batch(1, 5, 4, 48))
    b = everything.batch(1, 5, 16, 48)
    assert torch.equal(b, everything.batch(1, 5, 16, 48))
    as_u8 = (b * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert all(_colours(im) < 48 * 48 / 2 for im in as_u8)  # noise crops have ~all-distinct pixels
    m = (mixed.batch(2, 0, 64, 32) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    share = np.mean([_colours(im) < 32 * 32 / 2 for im in m])
    assert 0.3 < share < 0.7


def test_share_is_checked_and_part_of_the_recipe(noise_train_dir: Path) -> None:
    with pytest.raises(ValueError, match="synthetic"):
        CropDataset(noise_train_dir, synthetic=1.5)
    with pytest.raises(ValueError, match="synthetic"):
        TrainConfig(synthetic=-0.1).check()
    from udic.train.options import recipe_toml

    assert "synthetic = 0.25" in recipe_toml(TrainConfig(synthetic=0.25)).splitlines()


def test_rounded_rectangles_too_small_for_their_corners_still_draw() -> None:
    """Generator state 8681 draws a 13×11 rounded rectangle with 6-pixel corners and a 4-pixel
    outline, which Pillow refused (x1 < x0 inside) and which stopped a training run at step 3 750;
    its corners are now kept inside the box.  A sweep of states draws without an error."""
    image = synthetic._vector(np.random.default_rng(8681), 128, 1)
    assert image.size == (128, 128)
    for state in range(300):
        synthetic._vector(np.random.default_rng(state), 64, 2)


def test_a_pool_is_the_same_whatever_the_workers_and_feeds_synthetic_crops(noise_train_dir: Path) -> None:
    from udic.train.data import synthetic_pool_images

    one = synthetic_pool_images(70, 40, seed=3, workers=1)
    two = synthetic_pool_images(70, 40, seed=3, workers=2)
    assert len(one) == 70 and all(np.array_equal(a, b) for a, b in zip(one, two))
    assert not np.array_equal(one[0], synthetic_pool_images(1, 40, seed=4)[0])
    pooled = CropDataset(noise_train_dir, synthetic=1.0, synthetic_pool=5, pool_size=40, pool_seed=3)
    assert len(pooled.pool) == 5
    b = pooled.batch_uint8(1, 0, 12, 32)
    assert b.dtype == torch.uint8 and b.shape == (12, 3, 32, 32)
    crops = b.permute(0, 2, 3, 1).numpy()
    # every crop is a piece of a pool image, flipped or not
    for crop in crops:
        assert any(np.array_equal(crop, im[y : y + 32, x : x + 32]) or np.array_equal(crop, im[y : y + 32, x : x + 32][:, ::-1])
                   for im in pooled.pool for y in range(9) for x in range(9))
    assert torch.equal(pooled.batch(1, 0, 12, 32), b.float() / 255.0)
    # without synthetic images a pool is never made
    assert CropDataset(noise_train_dir, synthetic_pool=5).pool == []


def _quarter_turns(crop: torch.Tensor, windows: list[torch.Tensor]) -> int | None:
    """How many quarter turns make ``crop`` from a (possibly mirrored) one of ``windows``, each
    image's (3, rows, cols, size, size) crops."""
    for k in range(4):
        unturned = torch.rot90(crop, -k, dims=(1, 2))
        for view in (unturned, unturned.flip(2)):
            if any((w == view[:, None, None]).flatten(3).all(3).all(0).any() for w in windows):
                return k
    return None


def test_dihedral_augment_turns_crops_and_leaves_flip_runs_alone(noise_train_dir: Path) -> None:
    flip = CropDataset(noise_train_dir)
    # the default draws what every run before the option drew (old recipes resume exactly)
    assert torch.equal(flip.batch_uint8(4, 2, 8, 32), CropDataset(noise_train_dir, augment="flip").batch_uint8(4, 2, 8, 32))
    turned = CropDataset(noise_train_dir, augment="dihedral")
    b = turned.batch_uint8(4, 2, 64, 32)
    assert torch.equal(b, turned.batch_uint8(4, 2, 64, 32))  # still a pure function of (seed, step)
    # every crop is one of the 8 views of some crop of a training image
    windows = [torch.from_numpy(im.copy()).permute(2, 0, 1).unfold(1, 32, 1).unfold(2, 32, 1) for im in turned.images]
    turns = [_quarter_turns(crop, windows) for crop in b]
    assert None not in turns
    assert set(turns) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="augment"):
        CropDataset(noise_train_dir, augment="rotate")
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment="rotate").check()
    from udic.train.options import recipe_toml

    assert 'augment = "dihedral"' in recipe_toml(TrainConfig(augment="dihedral")).splitlines()


def test_scale_augment_cuts_half_the_crops_from_a_downscaled_image(tmp_path: Path) -> None:
    d = tmp_path / "train"
    d.mkdir()
    rng = np.random.default_rng(5)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(d / f"t{i}.png")
    plain = CropDataset(d, min_size=32)
    assert torch.equal(plain.batch_uint8(3, 1, 8, 32), CropDataset(d, min_size=32, augment="flip").batch_uint8(3, 1, 8, 32))
    scaled = CropDataset(d, min_size=32, augment="scale")
    b = scaled.batch_uint8(3, 1, 48, 32)
    assert torch.equal(b, scaled.batch_uint8(3, 1, 48, 32))  # a pure function of (seed, step)

    def views(patch: np.ndarray) -> list[np.ndarray]:
        return [patch, patch[:, ::-1]]

    plain_crops = reduced = 0
    for crop in b.permute(0, 2, 3, 1).numpy():
        if any(np.array_equal(crop, v) for im in scaled.images for y in range(9) for x in range(9)
               for v in views(im[y : y + 32, x : x + 32])):
            plain_crops += 1
            continue
        # otherwise it is a wider window of a training image, Lanczos-reduced to the crop
        assert any(np.array_equal(crop, v) for im in scaled.images for size in range(33, 41)
                   for y in range(41 - size) for x in range(41 - size)
                   for v in views(np.asarray(Image.fromarray(im[y : y + size, x : x + size]).resize(
                       (32, 32), Image.Resampling.LANCZOS))))
        reduced += 1
    assert plain_crops > 8 and reduced > 8
    assert 'augment = "scale"' in recipe_toml(TrainConfig(augment="scale")).splitlines()
