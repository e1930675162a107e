"""EXIF and XMP through a .udic file (bitstream_spec.md §10): section format, image I/O, CLI."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import TinyModel, run, smooth_image
from udic import container as ctr
from udic import metadata
from udic.container import write_varint
from udic.errors import ContainerError
from udic.imageio import encode_image_bytes, load_image, to_pil
from udic.metadata import Metadata

XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description about="udic"/></rdf:RDF></x:xmpmeta>'


def _exif(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x0132] = "2024:05:06 07:08:09"  # DateTime
    if orientation:
        exif[0x0112] = orientation
    return exif.tobytes()


def _photo(fmt: str, orientation: int | None = None, xmp: bool = True) -> bytes:
    image = Image.fromarray(smooth_image(24, 40))
    kwargs = {"exif": _exif(orientation)}
    if xmp and fmt != "PNG":
        kwargs["xmp"] = XMP
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_section_round_trip_and_record_order() -> None:
    meta = Metadata(exif=b"II*\x00exif", xmp=XMP)
    payload = metadata.encode(meta)
    raw = zlib.decompress(payload)
    assert raw == bytes([1]) + write_varint(8) + b"II*\x00exif" + bytes([2]) + write_varint(len(XMP)) + XMP
    assert metadata.decode(payload) == meta
    assert metadata.decode(metadata.encode(Metadata(xmp=XMP))) == Metadata(xmp=XMP)
    assert not Metadata()


@pytest.mark.parametrize("raw, why", [
    (b"", "no records"),
    (bytes([3, 1, 0]), "record kind 3"),
    (bytes([2, 1, 65, 1, 1, 66]), "record kind 1"),  # out of order
    (bytes([1, 1, 65, 1, 1, 66]), "record kind 1"),  # repeated
    (bytes([1, 0]), "empty record"),
    (bytes([1, 5, 65]), "truncated record"),
])
def test_corrupt_sections_are_refused(raw: bytes, why: str) -> None:
    with pytest.raises(ContainerError, match=why):
        metadata.decode(zlib.compress(raw))


def test_not_zlib_or_trailing_data_is_refused() -> None:
    with pytest.raises(ContainerError, match="corrupt metadata"):
        metadata.decode(b"not zlib at all")
    with pytest.raises(ContainerError, match="trailing"):
        metadata.decode(zlib.compress(bytes([1, 1, 65])) + b"x")


def test_zlib_bombs_are_refused() -> None:
    with pytest.raises(ContainerError, match="inflates past"):
        metadata.decode(zlib.compress(bytes([1]) + write_varint(17 << 20) + bytes(17 << 20)))


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
def test_loading_reads_exif_and_xmp_without_the_orientation(fmt: str) -> None:
    loaded = load_image(_photo(fmt, orientation=6))
    assert loaded.rgb.shape == (40, 24, 3)  # orientation 6 applied to the pixels …
    exif = Image.Exif()
    exif.load(loaded.metadata.exif)
    assert exif.get(0x010F) == "Canon" and 0x0112 not in exif  # … and removed from the EXIF kept
    assert loaded.metadata.xmp == (None if fmt == "PNG" else XMP)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_written_images_carry_the_metadata(fmt: str) -> None:
    meta = Metadata(exif=_exif(), xmp=XMP)
    data = encode_image_bytes(to_pil(smooth_image(16, 16), "RGB", metadata=meta), fmt)
    again = load_image(data)
    exif = Image.Exif()
    exif.load(again.metadata.exif)
    assert exif.get(0x010F) == "Canon"
    assert again.metadata.xmp == XMP


def test_encode_decode_keeps_metadata_and_strip_drops_it(runner: CliRunner, tiny_cache: TinyModel,
                                                         tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(_photo("JPEG", orientation=3))
    kept, stripped = tmp_path / "kept.udic", tmp_path / "stripped.udic"
    assert run(runner, "encode", str(tmp_path / "photo.jpg"), "-o", str(kept), "-q", "1").exit_code == 0
    result = run(runner, "encode", str(tmp_path / "photo.jpg"), "-o", str(stripped), "-q", "1", "--strip", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["metadata"] is False

    info = json.loads(run(runner, "info", str(kept), "--json").stdout)
    assert info["exif_bytes"] > 0 and info["xmp_bytes"] == len(XMP) and "metadata" in info["sections"]
    assert ctr.parse(kept.read_bytes()).header.flags & ctr.Flags.METADATA
    assert not ctr.parse(stripped.read_bytes()).header.flags & ctr.Flags.METADATA
    assert "exif" in run(runner, "info", str(kept)).stdout

    out = tmp_path / "out.jpg"
    assert run(runner, "decode", str(kept), "-o", str(out)).exit_code == 0
    decoded = Image.open(out)
    assert decoded.getexif().get(0x010F) == "Canon" and 0x0112 not in decoded.getexif()
    assert decoded.info.get("xmp") == XMP
    kept_png, stripped_png = tmp_path / "kept.png", tmp_path / "stripped.png"
    assert run(runner, "decode", str(kept), "-o", str(kept_png)).exit_code == 0
    assert run(runner, "decode", str(stripped), "-o", str(stripped_png)).exit_code == 0
    assert Image.open(kept_png).getexif().get(0x010F) == "Canon"
    assert not Image.open(stripped_png).getexif()
    # The pixels do not depend on the metadata.
    assert np.array_equal(np.asarray(Image.open(kept_png)), np.asarray(Image.open(stripped_png)))


def test_a_corrupt_metadata_section_is_refused_before_decoding(tiny_codec, tmp_path: Path) -> None:
    from conftest import loaded

    image = loaded(smooth_image(16, 16))
    image.metadata = Metadata(exif=_exif())
    data = tiny_codec.encode(image, 1.0).data
    cont = ctr.parse(data)
    cont.sections[ctr.Section.METADATA] = zlib.compress(bytes([9, 1, 0]))
    with pytest.raises(ContainerError, match="metadata"):
        tiny_codec.decode(ctr.write(cont))


def test_the_python_api_keeps_a_pil_images_metadata(tiny_cache: TinyModel) -> None:
    from udic import api

    source = Image.open(io.BytesIO(_photo("JPEG")))
    data = api.encode(source, 1.0, model=tiny_cache.id, effort=0)
    assert api.info(data).exif_bytes > 0 and api.info(data).xmp_bytes == len(XMP)
    assert api.decode(data).image.info["xmp"] == XMP
