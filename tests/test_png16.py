"""udic.png16: exact PNG samples at every depth Pillow cannot hold, strict refusal of bad input.

Independent references live here, written plainly (per byte, per pixel) from the PNG
spec: a filter, an unfilter, a chunk builder and an Adam7 splitter.  Files built with
them check the reader, a plain decoder built from them checks the writer, and Pillow
checks both wherever it can represent the image.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from udic import png16
from udic.errors import InputError

ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}


# --------------------------------------------------------------------------- plain references


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_file(width: int, height: int, depth: int, colour: int, filtered: bytes, *, interlace: int = 0,
             before_idat: tuple[bytes, ...] = ()) -> bytes:
    """A PNG from already-filtered image data (filter bytes included)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (png16.SIGNATURE + chunk(b"IHDR", ihdr) + b"".join(before_idat)
            + chunk(b"IDAT", zlib.compress(filtered)) + chunk(b"IEND", b""))


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def predict(kind: int, a: int, b: int, c: int) -> int:
    return (0, a, b, (a + b) // 2, paeth(a, b, c))[kind]


def ref_filter(rows: list[bytes], kinds: list[int], bpp: int) -> bytes:
    """Filter rows byte by byte with the given filter type per row (PNG spec §9)."""
    out = bytearray()
    prev = bytes(len(rows[0]))
    for row, kind in zip(rows, kinds):
        out.append(kind)
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            c = prev[i - bpp] if i >= bpp else 0
            out.append((x - predict(kind, a, prev[i], c)) & 0xFF)
        prev = row
    return bytes(out)


def ref_unfilter(data: bytes, height: int, stride: int, bpp: int) -> list[bytes]:
    """Undo filters byte by byte (PNG spec §9)."""
    rows, prev, pos = [], bytearray(stride), 0
    for _ in range(height):
        kind, cur = data[pos], bytearray(data[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            c = prev[i - bpp] if i >= bpp else 0
            cur[i] = (cur[i] + predict(kind, a, prev[i], c)) & 0xFF
        rows.append(bytes(cur))
        prev = cur
    return rows


def sample_rows(samples: np.ndarray, depth: int) -> list[bytes]:
    """Rows of packed sample bytes: big-endian for 16 bits, MSB-first for sub-byte depths."""
    h, w, c = samples.shape
    rows = []
    for y in range(h):
        values = [int(v) for v in samples[y].reshape(-1)]
        if depth == 16:
            rows.append(b"".join(struct.pack(">H", v) for v in values))
        elif depth == 8:
            rows.append(bytes(values))
        else:
            bits = "".join(format(v, f"0{depth}b") for v in values)
            bits += "0" * (-len(bits) % 8)
            rows.append(bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)))
    return rows


def hand_png(samples: np.ndarray, depth: int, kinds: list[int] | None = None, interlace: bool = False,
             colour: int | None = None, before_idat: tuple[bytes, ...] = ()) -> bytes:
    """Encode ``(H, W, C)`` samples with the plain references (filter types cycling 0..4 by default)."""
    h, w, c = samples.shape
    colour = COLOUR_TYPE[c] if colour is None else colour
    bpp = max(1, c * depth // 8)
    if not interlace:
        rows = sample_rows(samples, depth)
        kinds = kinds if kinds is not None else [y % 5 for y in range(h)]
        return png_file(w, h, depth, colour, ref_filter(rows, kinds, bpp), before_idat=before_idat)
    data = b""
    for index, (x0, y0, dx, dy) in enumerate(ADAM7):
        sub = samples[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        data += ref_filter(sample_rows(sub, depth), [(y + index) % 5 for y in range(sub.shape[0])], bpp)
    return png_file(w, h, depth, colour, data, interlace=1, before_idat=before_idat)


def plain_decode(png: bytes) -> tuple[np.ndarray, int]:
    """Decode a non-interlaced PNG written by ``png16.write`` with the plain references only."""
    assert png[:8] == png16.SIGNATURE
    pos, idat, header = 8, b"", None
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        assert zlib.crc32(kind + body) == struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])[0]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    w, h, depth, colour, _, _, interlace = header
    assert interlace == 0
    c = {0: 1, 4: 2, 2: 3, 6: 4}[colour]
    stride = (w * c * depth + 7) // 8
    rows = ref_unfilter(zlib.decompress(idat), h, stride, max(1, c * depth // 8))
    if depth == 16:
        flat = [struct.unpack(f">{w * c}H", r) for r in rows]
        return np.array(flat, np.uint16).reshape(h, w, c), depth
    if depth == 8:
        return np.frombuffer(b"".join(rows), np.uint8).reshape(h, w, c), depth
    values = [[int("".join(format(b, "08b") for b in r)[i * depth:(i + 1) * depth], 2) for i in range(w)]
              for r in rows]
    return np.array(values, np.uint8).reshape(h, w, 1), depth


def random_samples(h: int, w: int, c: int, depth: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if depth == 16 else np.uint8
    return rng.integers(0, 1 << depth, (h, w, c)).astype(dtype)


def smooth_samples(h: int, w: int, c: int, depth: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    top = (1 << depth) - 1
    base = (xx * 3 + yy * 5)[:, :, None] * (top // 97 + 1) + np.arange(c) * (top // 7)
    noisy = base + rng.integers(0, 3, (h, w, c))
    return np.clip(noisy, 0, top).astype(np.uint16 if depth == 16 else np.uint8)


def pillow_png(image: Image.Image, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **params)
    return buf.getvalue()


# --------------------------------------------------------------------------- round trips


SHAPES = [(1, 1), (1, 23), (19, 1), (13, 17)]


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("content", [random_samples, smooth_samples])
def test_write_read_round_trip_is_exact(depth: int, channels: int, content) -> None:
    for h, w in SHAPES:
        samples = content(h, w, channels, depth, seed=h * 31 + w)
        png = png16.write(samples)
        decoded, info = png16.read(png)
        assert decoded.dtype == samples.dtype and decoded.shape == (h, w, channels)
        np.testing.assert_array_equal(decoded, samples)
        assert info == {"bit_depth": depth, "icc": None, "exif": None, "interlaced": False, "transparent": None}
        assert png16.probe(png) == (w, h, depth, channels)


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_writes_decode_with_the_plain_reference_decoder(depth: int, channels: int) -> None:
    # the hand-built expectation: a fixed ramp whose 16-bit values use both bytes
    h, w = 6, 9
    idx = np.arange(h * w * channels).reshape(h, w, channels)
    expected = ((idx * 2654435761) % (1 << depth)).astype(np.uint16 if depth == 16 else np.uint8)
    for samples in (expected, smooth_samples(h, w, channels, depth)):
        decoded, got_depth = plain_decode(png16.write(samples, compress_level=9))
        assert got_depth == depth
        np.testing.assert_array_equal(decoded, samples)


def test_writer_uses_several_filter_types_on_mixed_content() -> None:
    # smooth rows favour Up/Paeth, a noise row None; the choice must be real, not fixed
    samples = smooth_samples(16, 32, 3, 16)
    samples[7] = random_samples(1, 32, 3, 16, seed=5)[0]
    png = png16.write(samples)
    ihdr_end = 8 + 25
    idat = png[ihdr_end:]
    length = struct.unpack(">I", idat[:4])[0]
    raw = zlib.decompress(idat[8:8 + length])
    stride = 32 * 3 * 2
    kinds = {raw[y * (stride + 1)] for y in range(16)}
    assert len(kinds) >= 2
    np.testing.assert_array_equal(png16.read(png)[0], samples)


def test_two_dimensional_input_is_single_channel_gray() -> None:
    gray = random_samples(5, 4, 1, 16)[:, :, 0]
    decoded, _ = png16.read(png16.write(gray))
    np.testing.assert_array_equal(decoded[:, :, 0], gray)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_sub_byte_gray_round_trips_with_raw_values(depth: int) -> None:
    for h, w in SHAPES + [(3, 9)]:
        samples = random_samples(h, w, 1, depth, seed=w)
        png = png16.write(samples, bit_depth=depth)
        decoded, info = png16.read(png)
        assert info["bit_depth"] == depth
        np.testing.assert_array_equal(decoded, samples)
        np.testing.assert_array_equal(plain_decode(png)[0], samples)


def test_writer_refuses_misuse() -> None:
    with pytest.raises(ValueError):
        png16.write(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError):
        png16.write(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ValueError):
        png16.write(np.zeros((0, 2, 3), np.uint8))
    with pytest.raises(ValueError):
        png16.write(np.zeros((2, 2, 3), np.uint8), bit_depth=16)
    with pytest.raises(ValueError):
        png16.write(np.full((2, 2), 4, np.uint8), bit_depth=2)
    with pytest.raises(ValueError):
        png16.write(np.zeros((2, 2, 3), np.uint8), bit_depth=4)
    with pytest.raises(ValueError):
        png16.write(np.zeros((2, 2), np.uint8), compress_level=10)


# --------------------------------------------------------------------------- Pillow agreement


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
def test_reads_pillow_8bit_pngs_exactly(mode: str) -> None:
    channels = len(mode)
    for samples in (random_samples(21, 30, channels, 8), smooth_samples(21, 30, channels, 8)):
        image = Image.fromarray(samples if channels > 1 else samples[:, :, 0], mode)
        for level in (0, 6, 9):
            decoded, info = png16.read(pillow_png(image, compress_level=level))
            expected = np.asarray(Image.open(io.BytesIO(pillow_png(image, compress_level=level))))
            np.testing.assert_array_equal(decoded.reshape(expected.shape), expected)
            assert info["bit_depth"] == 8


def test_reads_pillow_palette_with_transparency_as_rgba() -> None:
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 6, (11, 13)).astype(np.uint8), "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 8, 7, 200, 100, 50])
    png = pillow_png(image, transparency=bytes([0, 128, 255, 7]))
    decoded, info = png16.read(png)
    expected = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    np.testing.assert_array_equal(decoded, expected)
    assert info["bit_depth"] == 8 and png16.probe(png) == (13, 11, 8, 4)
    plain = pillow_png(image)
    np.testing.assert_array_equal(png16.read(plain)[0], np.asarray(Image.open(io.BytesIO(plain)).convert("RGB")))
    assert png16.probe(plain) == (13, 11, 8, 3)


def test_reads_pillow_16bit_gray_and_1bit() -> None:
    samples = random_samples(9, 14, 1, 16)[:, :, 0]
    image = Image.fromarray(samples)
    assert image.mode == "I;16"
    png = pillow_png(image)
    decoded, info = png16.read(png)
    np.testing.assert_array_equal(decoded[:, :, 0], np.asarray(Image.open(io.BytesIO(png))))
    assert info["bit_depth"] == 16 and decoded.dtype == np.uint16
    bits = Image.fromarray(random_samples(7, 11, 1, 1)[:, :, 0].astype(bool))
    png = pillow_png(bits)
    decoded, info = png16.read(png)
    np.testing.assert_array_equal(decoded[:, :, 0], np.asarray(Image.open(io.BytesIO(png))).astype(np.uint8))
    assert info["bit_depth"] == 1


def test_pillow_reads_our_writes() -> None:
    for mode, channels in (("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)):
        samples = smooth_samples(10, 12, channels, 8)
        reread = np.asarray(Image.open(io.BytesIO(png16.write(samples))))
        np.testing.assert_array_equal(reread.reshape(samples.shape), samples)
    gray16 = random_samples(10, 12, 1, 16)
    image = Image.open(io.BytesIO(png16.write(gray16)))
    assert image.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(image), gray16[:, :, 0])


# --------------------------------------------------------------------------- filters and interlace


@pytest.mark.parametrize("depth,channels", [(8, 1), (8, 2), (8, 3), (8, 4), (16, 1), (16, 2), (16, 3), (16, 4),
                                            (4, 1), (2, 1), (1, 1)])
def test_every_filter_type_decodes(depth: int, channels: int) -> None:
    for h, w in [(1, 1), (1, 9), (10, 1), (12, 19)]:
        for seed, make in enumerate((random_samples, smooth_samples)):
            samples = make(h, w, channels, depth, seed=seed)
            for kinds in ([y % 5 for y in range(h)], [(3 * y + 4) % 5 for y in range(h)], [4] * h, [3] * h):
                png = hand_png(samples, depth, kinds)
                np.testing.assert_array_equal(png16.read(png)[0], samples, err_msg=f"{kinds} {h}x{w}")


def test_unfilter_paths_match_the_plain_reference() -> None:
    rng = np.random.default_rng(11)
    for bpp, stride_units, height in [(1, 1, 1), (1, 37, 5), (3, 8, 20), (8, 5, 3), (6, 16, 9), (2, 30, 40)]:
        stride = bpp * stride_units
        for allowed in ((0, 1, 2), (0, 1, 2, 3, 4), (3,), (4,), (2,), (1,)):
            kinds = rng.choice(allowed, height).astype(np.uint8)
            filtered = rng.integers(0, 256, (height, stride)).astype(np.uint8)
            data = b"".join(bytes([k]) + r.tobytes() for k, r in zip(kinds, filtered))
            expected = np.frombuffer(b"".join(ref_unfilter(data, height, stride, bpp)), np.uint8)
            got = png16.unfilter(filtered, kinds, bpp)
            np.testing.assert_array_equal(got.reshape(-1), expected, err_msg=f"{bpp} {allowed}")


@pytest.mark.parametrize("depth,channels", [(8, 1), (8, 3), (16, 4), (16, 2), (2, 1), (1, 1)])
def test_adam7_interlaced_decodes(depth: int, channels: int) -> None:
    for h, w in [(1, 1), (1, 3), (2, 2), (5, 1), (3, 9), (8, 8), (9, 17), (16, 13)]:
        samples = random_samples(h, w, channels, depth, seed=h + w)
        png = hand_png(samples, depth, interlace=True)
        decoded, info = png16.read(png)
        assert info["interlaced"] is True
        np.testing.assert_array_equal(decoded, samples, err_msg=f"{h}x{w}")


def test_adam7_palette_expands() -> None:
    index = np.random.default_rng(2).integers(0, 3, (7, 10, 1)).astype(np.uint8)
    palette = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    png = hand_png(index, 2, interlace=True, colour=3,
                   before_idat=(chunk(b"PLTE", palette.tobytes()), chunk(b"tRNS", b"\x00\x80")))
    decoded, _ = png16.read(png)
    alpha = np.array([0, 128, 255], np.uint8)
    np.testing.assert_array_equal(decoded, np.concatenate([palette, alpha[:, None]], axis=1)[index[:, :, 0]])


def test_colour_key_transparency_is_reported_not_applied() -> None:
    samples = random_samples(4, 5, 3, 16)
    png = hand_png(samples, 16, before_idat=(chunk(b"tRNS", struct.pack(">HHH", 1, 2, 65535)),))
    decoded, info = png16.read(png)
    np.testing.assert_array_equal(decoded, samples)
    assert info["transparent"] == (1, 2, 65535)


# --------------------------------------------------------------------------- metadata


def test_icc_and_exif_round_trip() -> None:
    icc = bytes(range(256)) * 40
    exif = b"MM\x00*\x00\x00\x00\x08" + bytes(30)
    samples = smooth_samples(4, 6, 3, 16)
    png = png16.write(samples, icc=icc, exif=exif)
    decoded, info = png16.read(png)
    np.testing.assert_array_equal(decoded, samples)
    assert info["icc"] == icc and info["exif"] == exif
    pillow = Image.open(io.BytesIO(png16.write(smooth_samples(4, 6, 3, 8), icc=icc, exif=exif)))
    assert pillow.info["icc_profile"] == icc
    assert pillow.info["exif"].endswith(exif)
    from_pillow = pillow_png(Image.fromarray(smooth_samples(4, 6, 3, 8)), icc_profile=icc)
    assert png16.read(from_pillow)[1]["icc"] == icc
    # XMP goes into an iTXt chunk where Pillow (and other readers) find it
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    assert Image.open(io.BytesIO(png16.write(samples, xmp=xmp))).info["XML:com.adobe.xmp"] == xmp.decode()
    # Pillow's form of EXIF ("Exif\0\0" first) goes into eXIf as the TIFF structure alone
    assert png16.read(png16.write(samples, exif=b"Exif\x00\x00" + exif))[1]["exif"] == exif


def test_oversized_or_corrupt_icc_is_refused() -> None:
    samples = random_samples(2, 2, 3, 8)
    big = chunk(b"iCCP", b"p\x00\x00" + zlib.compress(bytes(png16.MAX_ICC_BYTES + 1)))
    with pytest.raises(InputError, match="MiB"):
        png16.read(hand_png(samples, 8, before_idat=(big,)))
    for body in (b"\x00\x00" + zlib.compress(b"x"), b"p\x00\x01" + zlib.compress(b"x"), b"p\x00\x00garbage",
                 b"p\x00\x00" + zlib.compress(b"profile")[:-3]):
        with pytest.raises(InputError):
            png16.read(hand_png(samples, 8, before_idat=(chunk(b"iCCP", body),)))


def test_unknown_ancillary_chunks_are_skipped() -> None:
    samples = random_samples(3, 3, 4, 16)
    png = hand_png(samples, 16, before_idat=(chunk(b"tEXt", b"k\x00v"), chunk(b"abCD", b"anything")))
    np.testing.assert_array_equal(png16.read(png)[0], samples)


# --------------------------------------------------------------------------- refusals


def test_probe() -> None:
    png = png16.write(random_samples(3, 5, 2, 16))
    assert png16.probe(png) == (5, 3, 16, 2)
    for junk in (b"", b"\xff\xd8\xff\xe0" + bytes(40), png[:20], png16.SIGNATURE + bytes(40)):
        assert png16.probe(junk) is None


def test_truncation_at_every_offset_is_an_input_error() -> None:
    png = png16.write(random_samples(6, 7, 3, 16), icc=b"icc" * 10, exif=b"MM\x00*")
    for cut in range(len(png)):
        with pytest.raises(InputError):
            png16.read(png[:cut])


def test_corruption_at_every_offset_is_an_input_error() -> None:
    png = png16.write(random_samples(4, 5, 4, 8), icc=b"icc" * 10)
    for offset in range(len(png)):
        for flip in (0x01, 0xFF):
            damaged = bytearray(png)
            damaged[offset] ^= flip
            with pytest.raises(InputError):
                png16.read(bytes(damaged))


def test_corrupt_chunk_bodies_with_valid_crcs_never_escape_as_other_errors() -> None:
    rng = np.random.default_rng(7)
    samples = smooth_samples(9, 11, 3, 16)
    filtered = ref_filter(sample_rows(samples, 16), [y % 5 for y in range(9)], 6)
    compressed = zlib.compress(filtered)
    header = struct.pack(">IIBBBBB", 11, 9, 16, 2, 0, 0, 0)
    outcomes = set()
    for trial in range(300):
        target = trial % 3
        ihdr, raw, idat = bytearray(header), bytearray(filtered), bytearray(compressed)
        if target == 0:
            ihdr[rng.integers(0, len(ihdr))] = rng.integers(0, 256)
        elif target == 1:
            raw[rng.integers(0, len(raw))] = rng.integers(0, 256)  # filter bytes included
            idat = bytearray(zlib.compress(bytes(raw)))
        else:
            idat[rng.integers(0, len(idat))] ^= 1 << int(rng.integers(0, 8))
        png = png16.SIGNATURE + chunk(b"IHDR", bytes(ihdr)) + chunk(b"IDAT", bytes(idat)) + chunk(b"IEND", b"")
        try:
            png16.read(png, max_pixels=1 << 20)
            outcomes.add("ok")
        except InputError:
            outcomes.add("refused")
    assert outcomes == {"ok", "refused"}


def _with_crc_fixed(png: bytes, offset: int, new: bytes) -> bytes:
    """Overwrite bytes inside the IHDR body and recompute its CRC."""
    data = bytearray(png)
    data[offset:offset + len(new)] = new
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_inconsistent_ihdr_is_refused() -> None:
    png = png16.write(random_samples(3, 3, 3, 8))
    for offset, new in [(16, b"\x00\x00\x00\x00"), (20, b"\x00\x00\x00\x00"), (24, b"\x03"), (24, b"\x10\x05"),
                        (24, b"\x10\x03"), (24, b"\x01\x02"), (26, b"\x01"), (27, b"\x01"), (28, b"\x02"),
                        (16, b"\xff\xff\xff\xff")]:
        with pytest.raises(InputError):
            png16.read(_with_crc_fixed(png, offset, new))


def test_structural_errors_are_refused() -> None:
    samples = random_samples(3, 4, 1, 8)
    rows = sample_rows(samples, 8)
    good = ref_filter(rows, [0, 1, 2], 1)
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 8, 0, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(good))
    iend = chunk(b"IEND", b"")
    sig = png16.SIGNATURE
    open_stream = zlib.compressobj()
    unterminated = open_stream.compress(good) + open_stream.flush(zlib.Z_SYNC_FLUSH)
    cases = {
        "unknown critical": sig + ihdr + chunk(b"ABCD", b"") + idat + iend,
        "no IDAT": sig + ihdr + iend,
        "no IEND": sig + ihdr + idat,
        "IHDR not first": sig + idat + ihdr + iend,
        "two IHDR": sig + ihdr + ihdr + idat + iend,
        "split IDAT": sig + ihdr + chunk(b"IDAT", zlib.compress(good)[:5]) + chunk(b"tEXt", b"a\x00b")
        + chunk(b"IDAT", zlib.compress(good)[5:]) + iend,
        "bad filter type": sig + ihdr + chunk(b"IDAT", zlib.compress(b"\x05" + good[1:])) + iend,
        "short data": sig + ihdr + chunk(b"IDAT", zlib.compress(good[:-1])) + iend,
        "unterminated zlib": sig + ihdr + chunk(b"IDAT", unterminated) + iend,
        "gray with PLTE": sig + ihdr + chunk(b"PLTE", bytes(6)) + idat + iend,
        "gray tRNS length": sig + ihdr + chunk(b"tRNS", b"\x00") + idat + iend,
        "bad chunk name": sig + ihdr + chunk(b"ab1d", b"") + idat + iend,
        "not png": b"GIF89a" + bytes(40),
    }
    palette_ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 8, 3, 0, 0, 0))
    cases["palette without PLTE"] = sig + palette_ihdr + idat + iend
    cases["index past PLTE"] = sig + palette_ihdr + chunk(b"PLTE", bytes(6)) + idat + iend
    cases["tRNS longer than PLTE"] = (sig + palette_ihdr + chunk(b"PLTE", bytes(765)) + chunk(b"tRNS", bytes(256))
                                      + idat + iend)
    cases["PLTE after IDAT"] = sig + palette_ihdr + idat + chunk(b"PLTE", bytes(768)) + iend
    for name, png in cases.items():
        try:
            png16.read(png)
        except InputError:
            continue
        pytest.fail(f"{name}: not refused")
    # the valid counterparts decode (so the refusals above are about the defect)
    np.testing.assert_array_equal(png16.read(sig + ihdr + idat + iend)[0], samples)
    index_ok = sig + palette_ihdr + chunk(b"PLTE", bytes(768)) + idat + iend
    assert png16.read(index_ok)[0].shape == (3, 4, 3)


def test_decompression_bomb_is_refused_without_inflating_it() -> None:
    bomb = zlib.compressobj(1)
    zeros = bytes(1 << 20)
    compressed = b"".join(bomb.compress(zeros) for _ in range(64)) + bomb.flush()  # 64 MiB of zeros
    assert len(compressed) < 1 << 20
    png = (png16.SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 6, 0, 0, 0))
           + chunk(b"IDAT", compressed) + chunk(b"IEND", b""))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="inflates past"):
            png16.read(png)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # inflation stopped just past the 520 bytes IHDR implies: nothing near 64 MiB was produced
    assert peak < 4 << 20


def test_max_pixels_is_checked_before_inflating() -> None:
    # invalid zlib after a huge IHDR: the refusal must name the size, so inflate never ran
    huge = (png16.SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 16, 6, 0, 0, 0))
            + chunk(b"IDAT", b"not zlib at all") + chunk(b"IEND", b""))
    with pytest.raises(InputError, match="pixel limit"):
        png16.read(huge)
    small = png16.write(random_samples(10, 10, 1, 8))
    with pytest.raises(InputError, match="pixel limit"):
        png16.read(small, max_pixels=99)
    assert png16.read(small, max_pixels=100)[0].shape == (10, 10, 1)


def test_import_is_light() -> None:
    code = "import sys, udic.png16; print(sorted(m for m in ('torch', 'compressai', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_thin_images_unfilter_byte_by_byte_as_the_wavefront_does(monkeypatch) -> None:
    """A thin image takes the byte loop (the wavefront's steps are per diagonal: a 1 x 1,000,000
    Paeth PNG took ~20 s); both give the same rows for every filter and lane distance."""
    rng = np.random.default_rng(7)
    for unit, stride in ((1, 3), (2, 6), (6, 12), (8, 8)):
        filtered = rng.integers(0, 256, (40, stride), dtype=np.uint8)
        filters = rng.integers(0, 5, 40).astype(np.uint8)
        np.testing.assert_array_equal(png16._unfilter_bytewise(filtered, filters, unit),
                                      png16._unfilter_wavefront(filtered, filters, unit))
    thin = rng.integers(0, 256, (5000, 6), dtype=np.uint8)
    kinds = np.full(5000, 4, np.uint8)
    expected = png16._unfilter_wavefront(thin, kinds, 6)
    wide = rng.integers(0, 256, (40, 600), dtype=np.uint8)

    def no_wavefront(*_):
        raise AssertionError("the wavefront ran on a thin image")

    monkeypatch.setattr(png16, "_unfilter_wavefront", no_wavefront)
    np.testing.assert_array_equal(png16.unfilter(thin, kinds, 6), expected)
    with pytest.raises(AssertionError, match="wavefront"):  # a wide one still takes it
        png16.unfilter(wide, np.full(40, 4, np.uint8), 6)
