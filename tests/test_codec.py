"""udic.codec with the tiny model: round trips in every input mode, header fields, refusals,
and exact decoding in another process with another thread count."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from conftest import TinyModel, loaded, png_bytes, psnr, smooth_image
from udic import container as ctr
from udic.codec import Codec, codec_for_file
from udic.errors import ContainerError, ModelError, UsageError
from udic.imageio import load_image


def round_trip(codec: Codec, image, quality: float = 3.0):
    li = image if hasattr(image, "rgb") else loaded(image)
    enc = codec.encode(li, quality)
    dec = codec.decode(enc.data)
    return li, enc, dec


def reseal(data: bytes, **header_changes) -> bytes:
    """Rewrite header fields and recompute the trailer CRC (a well-formed but altered file)."""
    cont = ctr.parse(data)
    return ctr.write(ctr.Container(header=replace(cont.header, **header_changes), sections=cont.sections))


# ---- round trips ---------------------------------------------------------------------------


def test_rgb_round_trip(tiny_codec: Codec) -> None:
    img = smooth_image(40, 56, seed=1)
    _, enc, dec = round_trip(tiny_codec, img)
    assert dec.image.mode == "RGB" and dec.image.size == (56, 40)
    out = np.asarray(dec.image)
    assert psnr(out, img) > 22
    assert enc.bpp == pytest.approx(8 * len(enc.data) / (40 * 56))
    assert enc.bits_hyper > 0 and enc.bits_latent > 0
    # A grossly wrong decode (swapped channels, transposed, wrong crop) would be far worse.
    assert psnr(out[..., ::-1], img) < 18


def test_decode_is_deterministic(tiny_codec: Codec) -> None:
    img = smooth_image(40, 56, seed=2)
    li = loaded(img)
    a = tiny_codec.encode(li, 2.0)
    b = tiny_codec.encode(li, 2.0)
    assert a.data == b.data
    first = np.asarray(tiny_codec.decode(a.data).image)
    tiny_codec.decode(tiny_codec.encode(loaded(smooth_image(24, 24, seed=3)), 5.0).data)  # other rate between
    second = np.asarray(tiny_codec.decode(a.data).image)
    np.testing.assert_array_equal(first, second)


def test_fresh_codec_decodes_identically(tiny_codec: Codec, tiny_model: TinyModel) -> None:
    img = smooth_image(40, 56, seed=4)
    enc = tiny_codec.encode(loaded(img), 4.0)
    fresh = codec_for_file(tiny_model.path)
    np.testing.assert_array_equal(np.asarray(fresh.decode(enc.data).image), np.asarray(tiny_codec.decode(enc.data).image))


def test_grayscale_round_trip(tiny_codec: Codec) -> None:
    gray = smooth_image(40, 56, seed=5, channels=1)
    li, enc, dec = round_trip(tiny_codec, Image.fromarray(gray, "L"))
    assert li.mode == "L"
    assert enc.header.colour == ctr.Colour.GRAY
    assert dec.image.mode == "L" and dec.image.size == (56, 40)
    assert psnr(np.asarray(dec.image), gray) > 22


def test_rgba_alpha_exact(tiny_codec: Codec) -> None:
    rgb = smooth_image(40, 56, seed=6)
    rng = np.random.default_rng(6)
    alpha = np.where(np.add.outer(np.arange(40), np.arange(56)) < 50, 255, 0).astype(np.uint8)
    alpha[rng.random(alpha.shape) < 0.05] = 128
    _, enc, dec = round_trip(tiny_codec, Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
    assert enc.header.flags & ctr.Flags.ALPHA
    assert dec.image.mode == "RGBA"
    out = np.asarray(dec.image)
    np.testing.assert_array_equal(out[..., 3], alpha)
    assert psnr(out[..., :3], rgb) > 22


def test_opaque_alpha_is_dropped(tiny_codec: Codec) -> None:
    rgb = smooth_image(16, 16, seed=7)
    _, enc, dec = round_trip(tiny_codec, Image.fromarray(np.dstack([rgb, np.full((16, 16), 255, np.uint8)]), "RGBA"))
    assert not enc.header.flags & ctr.Flags.ALPHA
    assert dec.image.mode == "RGB"


def test_la_round_trip(tiny_codec: Codec) -> None:
    gray = smooth_image(33, 21, seed=8, channels=1)
    alpha = np.random.default_rng(8).integers(0, 256, gray.shape, dtype=np.uint8)
    _, enc, dec = round_trip(tiny_codec, Image.fromarray(np.dstack([gray, alpha]), "LA"))
    assert enc.header.colour == ctr.Colour.GRAY and enc.header.flags & ctr.Flags.ALPHA
    assert dec.image.mode == "LA" and dec.image.size == (21, 33)
    out = np.asarray(dec.image)
    np.testing.assert_array_equal(out[..., 1], alpha)
    assert psnr(out[..., 0], gray) > 20


def test_palette_with_transparency(tiny_codec: Codec) -> None:
    rgb = smooth_image(40, 56, seed=9)
    pal = Image.fromarray(rgb).quantize(16)
    idx = np.asarray(pal).copy()
    idx[:10, :10] = 3
    pal = Image.fromarray(idx, "P")
    pal.putpalette(Image.fromarray(rgb).quantize(16).getpalette())
    li = load_image(png_bytes(pal, transparency=3))
    assert li.alpha is not None
    _, enc, dec = round_trip(tiny_codec, li)
    assert enc.header.flags & ctr.Flags.ALPHA
    assert dec.image.mode == "RGBA"
    out = np.asarray(dec.image)
    np.testing.assert_array_equal(out[..., 3], np.where(idx == 3, 0, 255))
    assert psnr(out[..., :3], li.rgb) > 20


def test_cmyk_input(tiny_codec: Codec) -> None:
    rgb = smooth_image(40, 56, seed=10)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, format="TIFF")
    li = load_image(buf.getvalue())
    assert any("CMYK" in n for n in li.notices)
    _, enc, dec = round_trip(tiny_codec, li)
    assert enc.header.colour == ctr.Colour.RGB
    assert dec.image.mode == "RGB" and dec.image.size == (56, 40)
    assert psnr(np.asarray(dec.image), np.asarray(cmyk.convert("RGB"))) > 22


def test_16bit_gray_input(tiny_codec: Codec) -> None:
    gray8 = smooth_image(40, 56, seed=11, channels=1)
    gray16 = gray8.astype(np.uint16) * 257 + 100
    li = load_image(png_bytes(Image.fromarray(gray16)))
    assert li.mode == "L" and any("16-bit" in n for n in li.notices)
    _, enc, dec = round_trip(tiny_codec, li)
    assert enc.notices == li.notices
    assert dec.image.mode == "L"
    assert psnr(np.asarray(dec.image), ((gray16.astype(int) + 128) // 257)) > 22


def test_icc_profile_carried(tiny_codec: Codec) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    li = load_image(png_bytes(smooth_image(16, 24, seed=12), icc_profile=icc))
    _, enc, dec = round_trip(tiny_codec, li)
    assert enc.header.flags & ctr.Flags.ICC
    assert dec.image.info.get("icc_profile") == icc


@pytest.mark.parametrize("h, w", [(1, 1), (7, 300), (65, 1), (1, 65), (64, 64), (65, 129)])
def test_odd_sizes(tiny_codec: Codec, h: int, w: int) -> None:
    img = smooth_image(h, w, seed=h * 1000 + w)
    _, enc, dec = round_trip(tiny_codec, img, 2.0)
    assert (enc.header.width, enc.header.height) == (w, h)
    assert dec.image.size == (w, h)
    assert psnr(np.asarray(dec.image), img) > 18


# ---- header fields and rates --------------------------------------------------------------


def test_header_fields(tiny_codec: Codec, tiny_model: TinyModel) -> None:
    enc = tiny_codec.encode(loaded(smooth_image(40, 56, seed=13)), 4.0)
    h = ctr.parse(enc.data).header
    assert h == enc.header
    assert (h.width, h.height, h.version) == (56, 40, 4)
    assert (h.tile, h.effort) == (0, 0)
    assert h.rate == 1024 and h.quality == 4.0
    assert h.model_id == tiny_model.id == tiny_codec.model_id
    assert h.colour == ctr.Colour.RGB and h.flags == ctr.Flags(0)
    dec = tiny_codec.decode(enc.data)
    assert dec.header == h


def test_latent_crc_covers_decoded_integers(tiny_codec: Codec) -> None:
    """latent_crc = CRC-32 of z then residuals, int32 little-endian, C order (§2)."""
    enc = tiny_codec.encode(loaded(smooth_image(40, 56, seed=14)), 3.0)
    cont = ctr.parse(enc.data)
    z, r, _ = tiny_codec.decode_integers(cont)
    assert z.shape == (8, 1, 1) and r.shape == (12, 4, 4)  # 40×56 pads to 64×64
    crc = zlib.crc32(r.astype("<i4").tobytes(), zlib.crc32(z.astype("<i4").tobytes()))
    assert crc == enc.header.latent_crc


def test_decode_integers_on_fresh_codec(tiny_codec: Codec, tiny_model: TinyModel) -> None:
    """decode_integers(cont) is public and gets the header: it must not depend on hidden state."""
    enc = tiny_codec.encode(loaded(smooth_image(40, 56, seed=25)), 2.0)  # rate 2 has an h_s LoRA delta
    fresh = codec_for_file(tiny_model.path)  # starts at rate 0
    z, r, _ = fresh.decode_integers(ctr.parse(enc.data))
    crc = zlib.crc32(r.astype("<i4").tobytes(), zlib.crc32(z.astype("<i4").tobytes()))
    assert crc == enc.header.latent_crc


def test_analyse_uses_the_requested_rate(tiny_model: TinyModel) -> None:
    rgb = smooth_image(40, 56, seed=26)
    fresh = codec_for_file(tiny_model.path)  # rate 0 selected
    y_fresh, _ = fresh.analyse(rgb, 2.0)
    selected = codec_for_file(tiny_model.path)
    selected._select_rate(2)  # what encode() does first; g_a.res[2] has an r2 delta
    y_selected, _ = selected.analyse(rgb, 2.0)
    np.testing.assert_array_equal(y_fresh, y_selected)


@pytest.mark.parametrize("quality, rate", [(2.5, 640), (0.0, 0), (5.0, 1280), (1 / 3, 85), (4.999, 1280)])
def test_fractional_quality(tiny_codec: Codec, quality: float, rate: int) -> None:
    img = smooth_image(40, 56, seed=15)
    _, enc, dec = round_trip(tiny_codec, img, quality)
    assert enc.header.rate == rate
    assert dec.header.quality == rate / 256
    assert psnr(np.asarray(dec.image), img) > 22


def test_fractional_quality_between_neighbours(tiny_codec: Codec) -> None:
    li = loaded(smooth_image(64, 64, seed=16))
    sizes = [len(tiny_codec.encode(li, q).data) for q in (0.0, 2.0, 2.5, 3.0, 5.0)]
    assert sizes[0] < sizes[-1]
    assert sizes[1] <= sizes[2] <= sizes[3]
    assert tiny_codec.encode(li, 2.5).data != tiny_codec.encode(li, 2.0).data


@pytest.mark.parametrize("quality", [-0.01, 5.01, 6, float("nan"), float("inf"), "3", None])
def test_quality_out_of_range(tiny_codec: Codec, quality) -> None:
    with pytest.raises(UsageError):
        tiny_codec.encode(loaded(smooth_image(8, 8)), quality)


# ---- refusals -------------------------------------------------------------------------------


def test_wrong_model(tiny_codec: Codec, other_model: TinyModel) -> None:
    enc = tiny_codec.encode(loaded(smooth_image(16, 16, seed=17)), 3.0)
    other = codec_for_file(other_model.path)
    assert other.model_id != tiny_codec.model_id
    with pytest.raises(ModelError, match=tiny_codec.model_id):
        other.decode(enc.data)


def test_altered_latent_crc_refused(tiny_codec: Codec) -> None:
    enc = tiny_codec.encode(loaded(smooth_image(40, 56, seed=18)), 3.0)
    bad = reseal(enc.data, latent_crc=enc.header.latent_crc ^ 1)
    assert ctr.parse(bad).header.latent_crc != enc.header.latent_crc  # well-formed otherwise
    with pytest.raises(ContainerError, match="checksum"):
        tiny_codec.decode(bad)


def test_swapped_sections_refused_by_latent_crc(tiny_codec: Codec) -> None:
    """Latents of another image under this header: decodes, but the latent CRC refuses it."""
    a = tiny_codec.encode(loaded(smooth_image(40, 56, seed=19)), 3.0)
    b = tiny_codec.encode(loaded(smooth_image(40, 56, seed=20)), 3.0)
    ca, cb = ctr.parse(a.data), ctr.parse(b.data)
    mixed = ctr.write(ctr.Container(header=ca.header, sections=cb.sections))
    with pytest.raises(ContainerError):
        tiny_codec.decode(mixed)


def test_rate_beyond_model_refused(tiny_codec: Codec) -> None:
    enc = tiny_codec.encode(loaded(smooth_image(16, 16, seed=21)), 5.0)
    with pytest.raises(ContainerError, match="rate"):
        tiny_codec.decode(reseal(enc.data, rate=5 * 256 + 1))


def test_every_byte_flip_and_truncation_refused(tiny_codec: Codec) -> None:
    enc = tiny_codec.encode(loaded(smooth_image(8, 8, seed=22)), 1.0)
    data = enc.data
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        with pytest.raises(ContainerError):
            tiny_codec.decode(bytes(bad))
        with pytest.raises(ContainerError):
            tiny_codec.decode(data[:pos])


def test_huge_claimed_size_refused(tiny_codec: Codec) -> None:
    enc = tiny_codec.encode(loaded(smooth_image(8, 8, seed=23)), 1.0)
    with pytest.raises(ContainerError, match="limit"):
        tiny_codec.decode(reseal(enc.data, width=100000, height=100000))


# ---- exact cross-process decode -----------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, sys, zlib
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from udic import container as ctr
    from udic.codec import codec_for_file
    model, src, dst = sys.argv[1:4]
    codec = codec_for_file(model)
    data = open(src, "rb").read()
    codec.decode(data).image.save(dst)  # selects the file's rate, checks latent_crc itself
    z, r, _ = codec.decode_integers(ctr.parse(data))
    crc = zlib.crc32(np.ascontiguousarray(r, dtype="<i4").tobytes(),
                     zlib.crc32(np.ascontiguousarray(z, dtype="<i4").tobytes()))
    print(json.dumps({"crc": crc, "threads": torch.get_num_threads()}))
    """
)


def test_exact_cross_process_decode(tiny_codec: Codec, tiny_model: TinyModel, tmp_path: Path) -> None:
    rgb = smooth_image(72, 90, seed=24)
    alpha = np.tile(np.linspace(0, 255, 90).astype(np.uint8), (72, 1))
    li = loaded(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        enc = tiny_codec.encode(li, 2.5)  # fractional: LoRA-merged rate with interpolated gains
        here = np.asarray(tiny_codec.decode(enc.data).image)
    finally:
        torch.set_num_threads(saved)
    src = tmp_path / "x.udic"
    src.write_bytes(enc.data)
    dst = tmp_path / "child.png"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tiny_model.path), str(src), str(dst)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["threads"] == 1
    assert report["crc"] == enc.header.latent_crc
    there = np.asarray(Image.open(dst))
    assert there.shape == here.shape == (72, 90, 4)
    np.testing.assert_array_equal(there, here)


# ---- tiles ---------------------------------------------------------------------------------


def test_choose_tile() -> None:
    from udic.codec import AUTO_TILE_PIXELS, DEFAULT_TILE, choose_tile

    assert choose_tile(512, 768) == 0  # small images are one piece
    assert choose_tile(4000, 6000) == DEFAULT_TILE
    assert AUTO_TILE_PIXELS < 4032 * 6016
    assert choose_tile(3000, 4000, 0) == 0  # --tile 0 forces one piece up to the window limit
    assert choose_tile(200, 150, 64) == 64
    assert choose_tile(200, 150, 256) == 0  # one tile covers it all: coded as one piece
    for bad in (100, -64, 256 * 64):
        with pytest.raises(UsageError, match="tile size"):
            choose_tile(200, 150, bad)


def test_tiled_coding_matches_whole_image(tiny_codec: Codec) -> None:
    """Haloed tiles cover the receptive fields: the same latents and (almost) the same pixels."""
    img = smooth_image(150, 200, seed=21)
    li = loaded(img)
    whole = tiny_codec.encode(li, 3.0, tile=0)
    seen: list[tuple[int, int]] = []
    tiled = tiny_codec.encode(li, 3.0, tile=64, progress=lambda d, t: seen.append((d, t)))
    assert (whole.header.tile, tiled.header.tile, tiled.header.tile_pixels) == (0, 1, 64)
    assert seen == [(i, 12) for i in range(1, 13)]  # 3 × 4 tiles of the 192×256 padded image
    a = np.asarray(tiny_codec.decode(whole.data).image).astype(int)
    decoded: list[tuple[int, int]] = []
    b = np.asarray(tiny_codec.decode(tiled.data, progress=lambda d, t: decoded.append((d, t))).image).astype(int)
    assert decoded[-1] == (12, 12)
    # Float summation order differs between window sizes: a few pixels may move by 1.
    assert np.abs(a - b).max() <= 2
    assert (a != b).mean() < 0.01
    assert abs(len(whole.data) - len(tiled.data)) <= 8
    # Decoding a tiled file is deterministic.
    assert np.array_equal(b, np.asarray(tiny_codec.decode(tiled.data).image).astype(int))


def test_version_1_files_still_decode(tiny_codec: Codec) -> None:
    li = loaded(smooth_image(40, 56, seed=22))
    enc = tiny_codec.encode(li, 2.0)
    old = reseal(enc.data, version=1, tile=0, effort=0)
    assert len(old) == len(enc.data) - 2 and old[4] == 1
    assert np.array_equal(np.asarray(tiny_codec.decode(old).image), np.asarray(tiny_codec.decode(enc.data).image))


def test_synthesis_window_is_bounded_on_both_sides(tiny_codec: Codec) -> None:
    """A whole-image synthesis of a huge image would need tens of GB: the encoder tiles
    instead, and a file asking for it is refused before anything is allocated."""
    from udic.codec import MAX_WINDOW_PIXELS, choose_tile

    assert choose_tile(6000, 8000) == 1024  # automatic tiling
    with pytest.raises(UsageError, match="MP limit"):
        choose_tile(6000, 8000, 0)
    assert choose_tile(4096, 4096, 0) == 0  # exactly at the limit
    data = tiny_codec.encode(loaded(smooth_image(16, 16)), 1.0).data
    huge = reseal(data, width=8000, height=6000, tile=0)
    with pytest.raises(ContainerError, match="synthesis window"):
        tiny_codec.decode(huge, max_pixels=10**9)
    assert 4096 * 4096 == MAX_WINDOW_PIXELS


# ---- issue 15: exact tiled decoding, bounded cost for crafted headers --------------------------


def _synthesis_by_threads(codec: Codec, data: bytes) -> dict[int, tuple[list[torch.Tensor], np.ndarray]]:
    """Per thread count (1, 2): every float output of the synthesis while ``data`` decodes, and
    the pixels; the thread count is put back afterwards."""
    before = torch.get_num_threads()
    outputs: dict[int, tuple[list[torch.Tensor], np.ndarray]] = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            windows: list[torch.Tensor] = []
            hook = codec.model.g_s.register_forward_hook(lambda m, i, o: windows.append(o.detach().clone()))
            try:
                pixels = np.asarray(codec.decode(data).image)
            finally:
                hook.remove()
            outputs[threads] = (windows, pixels)
    finally:
        torch.set_num_threads(before)
    return outputs


def test_tiled_decode_is_identical_across_thread_counts(tiny_codec: Codec) -> None:
    """Every window's float synthesis, hence every pixel, is the same with 1 and 2 threads.

    With 128-pixel tiles this image has 12×16-latent windows, a shape for which oneDNN's
    two-thread kernels round differently than one thread (thousands of floats differed).
    """
    enc = tiny_codec.encode(loaded(smooth_image(330, 460, seed=3)), 3.0, tile=128)
    assert enc.header.tile_pixels == 128
    before = torch.get_num_threads()
    outputs = _synthesis_by_threads(tiny_codec, enc.data)
    (one, pixels_one), (two, pixels_two) = outputs[1], outputs[2]
    assert len(one) == len(two) == 12
    assert any(w.shape[-2:] == (192, 256) for w in one)  # the shape that used to differ
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(pixels_one, pixels_two)
    assert torch.get_num_threads() == before  # the decoder puts the thread count back


def test_an_untiled_decode_is_identical_across_thread_counts(tiny_codec: Codec) -> None:
    """A whole image's shapes can take the kernels that round by thread count, as windows did."""
    enc = tiny_codec.encode(loaded(smooth_image(192, 192, seed=4)), 3.0, tile=0)
    assert enc.header.tile_pixels == 0
    outputs = _synthesis_by_threads(tiny_codec, enc.data)
    (one, _), (two, _) = outputs[1], outputs[2]
    assert len(one) == len(two) == 1 and torch.equal(one[0], two[0])


def test_decodes_on_several_threads_share_the_one_thread_setting() -> None:
    """The thread count is the process's: the last decode to finish restores it, not the first."""
    from udic.codec import _exact_windows

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = _exact_windows(torch.device("cpu")), _exact_windows(torch.device("cpu"))
        first.__enter__()
        second.__enter__()
        assert torch.get_num_threads() == 1
        first.__exit__(None, None, None)
        assert torch.get_num_threads() == 1  # the second still synthesises
        second.__exit__(None, None, None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_crafted_size_refused_before_any_allocation(tiny_codec: Codec, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small file whose header claims 7999×7999 in 1024-pixel tiles (issue 15 defect 1):
    its hyper-latent section cannot hold 125×125 positions, so it is refused before the
    hyper-synthesis, the latent decode or the synthesis run, in well under 200 MB."""
    import tracemalloc

    from udic.latent_codecs import MeanScaleHyperprior

    data = tiny_codec.encode(loaded(smooth_image(40, 56)), 3.0).data
    crafted = reseal(data, width=7999, height=7999, tile=16)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the decoder went on to the expensive part")

    monkeypatch.setattr(MeanScaleHyperprior, "entropy_params", must_not_run)
    monkeypatch.setattr(Codec, "synthesise", must_not_run)
    tracemalloc.start()
    try:
        with pytest.raises(ContainerError, match="too small"):
            tiny_codec.decode(crafted)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20


def test_crafted_latents_section_refused(tiny_codec: Codec) -> None:
    """A header that grows the latents beyond what their section can hold is refused too
    (the latents' bound is weak, ~1e-5 bit per latent at the narrowest table, so it takes
    the largest size a header can state)."""
    cont = ctr.parse(tiny_codec.encode(loaded(smooth_image(40, 56)), 3.0).data)
    side = ctr.MAX_DIMENSION
    z_shape, y_shape = tiny_codec.latent_shapes(replace(cont.header, width=side, height=side))
    with pytest.raises(ContainerError, match="latents section .* too small"):
        tiny_codec.latent_codec.check_latent_capacity(cont.sections[ctr.Section.LATENTS], y_shape)
    with pytest.raises(ContainerError, match="hyperlatents section .* too small"):
        tiny_codec.latent_codec.check_hyper_capacity(cont.sections[ctr.Section.HYPERLATENTS], z_shape)


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("DefaultCPUAllocator: not enough memory: you tried "
                                                                 "to allocate 123 bytes")])
def test_out_of_memory_is_one_line(tiny_codec: Codec, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    from udic.errors import UdicError

    data = tiny_codec.encode(loaded(smooth_image(40, 56)), 3.0).data

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(Codec, "synthesise", fail)
    with pytest.raises(UdicError, match="not enough memory to decode 56x40"):
        tiny_codec.decode(data)


def test_other_runtime_errors_are_not_hidden(tiny_codec: Codec, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tiny_codec.encode(loaded(smooth_image(40, 56)), 3.0).data

    def fail(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(Codec, "synthesise", fail)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        tiny_codec.decode(data)


def test_each_rate_codes_with_its_own_deltas(tiny_model: TinyModel) -> None:
    """The codec merges the selected rate's LoRA deltas (spec §4): after selecting rate 2 the
    weights are the base plus that delta, exactly; rate 3 (no delta) is the base; and the
    analysis at rate 2 differs from a copy of the model whose deltas were removed.  (Tests that
    compare the codec with itself pass just as well when no delta is ever merged.)"""
    import torch

    codec = codec_for_file(tiny_model.path)
    codec.select(codec.rate(0.0))
    layer = codec.model.g_a.res[2]
    base = layer.weight.detach().to(torch.float64).clone()
    delta = layer.lora["r2"].delta_float64()
    assert float(delta.abs().max()) > 0
    codec.select(codec.rate(2.0))
    assert torch.equal(layer.weight.detach(), (base + delta).to(layer.weight.dtype))
    codec.select(codec.rate(3.0))
    assert torch.equal(layer.weight.detach().to(torch.float64), base)

    rgb = smooth_image(40, 56, seed=26)
    stripped = codec_for_file(tiny_model.path)
    stripped.select(stripped.rate(0.0))
    for module in stripped.model.lora_modules():
        module.lora.clear()
    y_with, _ = codec.analyse(rgb, 2.0)
    y_without, _ = stripped.analyse(rgb, 2.0)
    assert not np.array_equal(y_with, y_without)
    np.testing.assert_array_equal(codec.analyse(rgb, 3.0)[0], stripped.analyse(rgb, 3.0)[0])
