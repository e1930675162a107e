"""Pixel-coded .udic files (format v5, spec §11): exact round trips through the
container, the samples' CRC, and the container's mode rules."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from udic import container as ctr
from udic import pixelcodec
from udic.errors import ContainerError
from udic.metadata import Metadata


def _image(shape: tuple[int, ...], dtype=np.uint8, depth: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w, c = shape
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 7 + yy * 3)[..., None] * np.arange(1, c + 1)[None, None, :]
    noise = rng.integers(0, 4, shape)
    return ((base + noise) % (1 << depth)).astype(dtype)


def _reseal(data: bytes) -> bytes:
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("shape,dtype,depth", [
    ((17, 23, 3), np.uint8, 8), ((17, 23, 4), np.uint8, 8), ((9, 31, 1), np.uint8, 8),
    ((9, 31, 2), np.uint8, 8), ((12, 10, 3), np.uint16, 16), ((12, 10, 1), np.uint16, 16),
    ((1, 1, 3), np.uint8, 8), ((1, 40, 3), np.uint8, 8), ((40, 1, 4), np.uint16, 10),
])
def test_lossless_file_round_trip_is_exact(shape, dtype, depth):
    src = _image(shape, dtype, depth)
    enc = pixelcodec.encode_file(src, depth, 0, icc=b"profile", metadata=Metadata(exif=b"Exif\0\0MM", xmp=None))
    cont = ctr.parse(enc.data)
    assert cont.header.version == ctr.PIXELS_VERSION and cont.header.mode == "pixels"
    assert cont.header.colour == (ctr.Colour.GRAY if shape[2] <= 2 else ctr.Colour.RGB)
    dec = pixelcodec.decode_file(enc.data)
    assert dec.samples.dtype == src.dtype and dec.samples.shape == src.shape
    assert np.array_equal(dec.samples, src)
    assert dec.bit_depth == depth and dec.max_error == 0
    assert dec.icc == b"profile" and dec.metadata.exif == b"Exif\0\0MM"


def test_sixteen_bit_samples_take_the_ladders_tolerances_scaled_to_their_depth():
    """The -q ladder and the mode choice name tolerances in 8-bit units and scale them by
    2^(depth - 8) for deeper samples (spec, "Qualities above the network"): ±4 is ±1,024 on 16-bit
    samples, up to 255 << 8 for the loosest; the coder refuses only what lies beyond that."""
    src = _image((20, 24, 3), np.uint16, 16, seed=4) * 97
    enc = pixelcodec.encode_file(src, 16, 4 << 8)
    dec = pixelcodec.decode_file(enc.data)
    diff = np.abs(dec.samples.astype(np.int64) - src.astype(np.int64))
    assert dec.bit_depth == 16 and dec.samples.dtype == np.uint16
    assert 0 < diff.max() <= 4 << 8 and dec.max_error == 4 << 8
    assert pixelcodec.max_error_limit(16) == 255 << 8 and pixelcodec.max_error_limit(10) == 255 << 2
    assert pixelcodec.max_error_limit(8) == pixelcodec.max_error_limit(1) == 255
    with pytest.raises(ValueError, match="0..65280"):
        pixelcodec.encode_file(src, 16, (255 << 8) + 1)
    with pytest.raises(ValueError, match="0..255"):
        pixelcodec.encode_file(_image((4, 4, 3)), 8, 256)


@pytest.mark.parametrize("max_error", [1, 2, 5])
def test_near_lossless_file_stays_within_the_tolerance(max_error):
    src = _image((24, 33, 4), seed=max_error)
    enc = pixelcodec.encode_file(src, 8, max_error, keep_reconstruction=True)
    dec = pixelcodec.decode_file(enc.data)
    diff = np.abs(dec.samples.astype(int) - src.astype(int))
    assert diff[..., :3].max() <= max_error
    assert diff[..., 3].max() == 0  # alpha is always exact
    assert np.array_equal(dec.samples, enc.reconstruction)
    assert dec.max_error == enc.max_error and dec.max_error in (0, max_error)


def test_psnr_helpers_match_hand_computed_values():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 2  # MSE = 4 / 12
    assert pixelcodec.psnr(a, a, 8) == float("inf")
    assert pixelcodec.psnr(a, b, 8) == pytest.approx(10 * np.log10(255**2 * 3))
    c = np.zeros((2, 2, 4), np.uint8)
    d = c.copy()
    d[..., 3] = 9  # alpha differences do not count in the colour PSNR
    assert pixelcodec.colour_psnr(c, d, 8) == float("inf")


def test_a_sample_changed_under_a_valid_trailer_is_refused_by_the_samples_crc():
    src = _image((16, 16, 3))
    data = bytearray(pixelcodec.encode_file(src, 8, 0).data)
    cont = ctr.parse(bytes(data))
    cont.header.latent_crc ^= 1
    forged = ctr.write(cont)
    with pytest.raises(ContainerError, match="checksum"):
        pixelcodec.decode_file(forged)


def test_pixel_files_cannot_carry_learned_sections_or_a_model():
    src = _image((8, 8, 3))
    cont = ctr.parse(pixelcodec.encode_file(src, 8, 0).data)
    cont.header.model_id = "00000000000000ff"
    with pytest.raises(ContainerError, match="zero model id"):
        ctr.parse(ctr.write(cont))
    cont = ctr.parse(pixelcodec.encode_file(src, 8, 0).data)
    cont.sections[ctr.Section.HYPERLATENTS] = b"\0\0\0\0"
    with pytest.raises(ContainerError, match="cannot have a hyperlatents section"):
        ctr.parse(ctr.write(cont))


def test_the_pixels_flag_is_reserved_before_version_5():
    src = _image((8, 8, 3))
    data = bytearray(pixelcodec.encode_file(src, 8, 0).data)
    assert data[4] == 5
    data[4] = 4
    with pytest.raises(ContainerError, match="reserved flag"):
        ctr.parse(_reseal(bytes(data)))


def test_the_section_description_names_the_pixel_mode():
    src = np.zeros((10, 12, 3), np.uint8)
    src[:, 6:] = (200, 10, 30)
    cont = ctr.parse(pixelcodec.encode_file(src, 8, 0).data)
    desc = ctr.describe_sections(cont)["pixels"]
    assert desc["present"] and desc["max_error"] == 0 and desc["channels"] == 3
    assert desc["mode"] in ("palette", "palette raster", "predictive", "stored")


def test_info_names_the_palette_coding_the_literal_cache_and_fresh_literals():
    """Gradient bands (80 colours): udic info says how the palette and the literals are coded."""
    from udic import api

    def bands(jitter: int) -> np.ndarray:
        rng = np.random.default_rng(3)
        yy, xx = np.mgrid[0:24, 0:32]
        k = xx + 2 * yy + rng.integers(0, jitter, (24, 32))
        return np.stack([40 + k % 200, 60 + k // 2 % 150, 90 + k // 3 % 120], axis=-1).astype(np.uint8)

    wandering = api.info(pixelcodec.encode_file(bands(4), 8, 0).data).pixel_coding
    assert wandering.startswith("palette raster, 3 channels, palette of ")
    assert ", literal cache, palette in order of first use" in wandering
    assert wandering.endswith(", row contexts")  # coded both ways (a small image): row contexts win
    straight = api.info(pixelcodec.encode_file(bands(1), 8, 0).data).pixel_coding
    assert "(coded in context)" in straight and "literal cache" not in straight
    gray = bands(1)[..., :1].astype(np.uint16) * 257
    assert "(coded)" in api.info(pixelcodec.encode_file(gray, 16, 0).data).pixel_coding  # a 16-bit ramp: a list


@pytest.mark.parametrize("channels,colour,alpha", [(1, "gray", False), (2, "gray", True), (3, "rgb", False),
                                                    (4, "rgb", True)])
def test_info_says_whether_a_pixel_coded_file_carries_alpha(channels, colour, alpha):
    """A pixel-coded file keeps its alpha inside the payload (no alpha section, no container
    flag), so ``udic info`` reads it from the payload's channels: it had said "alpha": false of
    every lossless RGBA file."""
    from udic import api

    for depth, dtype in ((8, np.uint8), (16, np.uint16)):
        fi = api.info(pixelcodec.encode_file(_image((6, 7, channels), dtype, depth), depth, 0).data)
        assert (fi.colour, fi.alpha, fi.bit_depth) == (colour, alpha, depth)


def test_info_names_literals_by_the_colour_above():
    from tools.fuzz import _smooth
    from udic import api

    coding = api.info(pixelcodec.encode_file(_smooth(22, 17, 15)[..., :1], 8, 3).data).pixel_coding
    assert "literals by the colour above" in coding


def test_info_counts_long_matches():
    """Noise with a block pasted again: udic info says how many long matches the file holds."""
    from tools.fuzz import _pasted
    from udic import api

    src = _pasted(26, 36)
    data = pixelcodec.encode_file(src, 8, 0).data
    coding = api.info(data).pixel_coding
    assert coding.startswith("palette raster") and coding.endswith(" long matches")
    count = int(coding.rsplit(", ", 1)[1].split()[0])
    assert count == lossless_describe(data)["long_matches"] > 0
    np.testing.assert_array_equal(np.asarray(api.decode(data, progress=False).image), src)


def lossless_describe(data: bytes) -> dict:
    from udic import lossless

    return lossless.describe(ctr.parse(data).sections[ctr.Section.PIXELS])


def test_importing_the_pixel_path_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, udic.pixelcodec; print('torch' in sys.modules, 'compressai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_header_the_payload_disagrees_with_is_refused_before_the_pixels_decode(monkeypatch):
    """The payload's own header and the small sections are checked first: the pixels' decode,
    bounded only by the image size, is not spent on a file that is refused anyway."""
    from udic import lossless

    src = _image((16, 16, 3))
    cont = ctr.parse(pixelcodec.encode_file(src, 8, 0).data)
    cont.header.width = 15
    forged = ctr.write(cont)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(lossless, "decode", must_not_run)
    with pytest.raises(ContainerError, match="pixels section holds 16x16, the header says 15x16"):
        pixelcodec.decode_file(forged)
    cont.header.width = 16
    cont.sections[ctr.Section.ICC] = b"not a profile"
    cont.header.flags = ctr.flags_for(cont.sections)
    with pytest.raises(ContainerError):
        pixelcodec.decode_file(ctr.write(cont))


def test_a_pixel_coded_file_is_version_5_only():
    """§11: `version` = 5; versions 6-8 describe learned files, and a decoder refuses them here."""
    src = _image((8, 8, 3))
    cont = ctr.parse(pixelcodec.encode_file(src, 8, 0).data)
    assert cont.header.version == ctr.PIXELS_VERSION
    cont.header.version = 8
    with pytest.raises(ContainerError, match="must be version 5"):
        ctr.parse(ctr.write(cont))


def test_info_names_damaged_sections_instead_of_guessing_or_failing():
    """A pixel payload info cannot read is reported as damaged (it had been shown as "lossless,
    ? channels"); a corrupt metadata section no longer fails the whole report."""
    from udic import api

    cont = ctr.parse(pixelcodec.encode_file(_image((6, 7, 3)), 8, 0).data)
    cont.sections[ctr.Section.PIXELS] = b"\xff" + cont.sections[ctr.Section.PIXELS][1:]
    fi = api.info(ctr.write(cont))
    assert fi.mode == "pixel-coded" and fi.max_error is None
    assert len(fi.damaged) == 1 and fi.damaged[0].startswith("pixels: ")
    cont = ctr.parse(pixelcodec.encode_file(_image((6, 7, 3)), 8, 0).data)
    cont.sections[ctr.Section.METADATA] = b"not zlib at all"
    cont.header.flags = ctr.flags_for(cont.sections)
    fi = api.info(ctr.write(cont))
    assert fi.mode == "lossless" and fi.damaged and fi.damaged[0].startswith("metadata: ")
    assert api.info(pixelcodec.encode_file(_image((6, 7, 3)), 8, 0).data).damaged == []


def test_info_reports_a_bad_resample_factor_and_a_payload_of_another_size():
    from udic import api
    from udic.sections import resample as resample_section

    header = ctr.Header(width=40, height=30, colour=ctr.Colour.RGB, flags=ctr.Flags.RESAMPLE, model_id="00" * 8,
                        rate=0, latent_crc=0, version=ctr.RESAMPLE_VERSION)
    learned = ctr.Container(header=header, sections={ctr.Section.HYPERLATENTS: b"", ctr.Section.LATENTS: b"",
                                                     ctr.Section.RESAMPLE: bytes([0, resample_section.FILTER_CUBIC])})
    fi = api.info(ctr.write(learned))  # (a factor of 0 had divided by zero)
    assert fi.coded_size is None and fi.damaged and fi.damaged[0].startswith("resample: ")
    learned.sections[ctr.Section.RESAMPLE] = bytes([2, resample_section.FILTER_CUBIC])
    assert api.info(ctr.write(learned)).coded_size == "20x15"
    cont = ctr.parse(pixelcodec.encode_file(_image((6, 7, 3)), 8, 0).data)
    cont.header.width = 9
    fi = api.info(ctr.write(cont))
    assert fi.damaged == ["pixels: the payload holds 7x6, the header says 9x6"]
