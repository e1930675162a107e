"""udic.container: the .udic file layout (bitstream_spec.md §1–3, §9)."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from dataclasses import replace

import pytest

from udic import container as ctr
from udic.container import (
    Colour,
    Container,
    Flags,
    Header,
    Section,
    parse,
    parse_with_layout,
    write,
    write_varint,
)
from udic.errors import ContainerError

MODEL_HEX = "0011223344556677"


def seal(body: bytes) -> bytes:
    """Append the CRC-32 trailer, so a structurally bad file still passes the checksum."""
    return body + struct.pack("<I", zlib.crc32(body))


def header_bytes(
    *,
    version: int = 4,
    width: bytes = b"\xac\x02",  # 300
    height: bytes = b"\x05",
    colour: int = 0,
    flags: int = 0,
    model: bytes = bytes.fromhex(MODEL_HEX),
    rate: bytes = b"\x80\x02",  # 640 = quality 2.5
    crc: bytes = b"\xef\xbe\xad\xde",
    tile: int = 16,  # 1024 px
    effort: int = 2,
    n_sections: bytes = b"\x02",
) -> bytes:
    since_v2 = bytes([tile, effort]) if version >= 2 else b""
    return (
        b"UDIC" + bytes([version]) + width + height + bytes([colour, flags]) + model + rate + crc + since_v2
        + n_sections
    )


HYPER = b"\x01\x02\x03\x04"
LATENTS = b"\xaa\xbb\xcc\xdd\x11\x22\x33\x44"
SECTIONS = b"\x01\x04" + HYPER + b"\x02\x08" + LATENTS


def minimal_file() -> bytes:
    """Hand-built 300×5 RGB file, quality 2.5, two sections; see the spec."""
    return seal(header_bytes() + SECTIONS)


def minimal_container() -> Container:
    return Container(
        header=Header(
            width=300,
            height=5,
            colour=Colour.RGB,
            flags=Flags(0),
            model_id=MODEL_HEX,
            rate=640,
            latent_crc=0xDEADBEEF,
            tile=16,
            effort=2,
        ),
        sections={Section.HYPERLATENTS: HYPER, Section.LATENTS: LATENTS},
    )


def full_container() -> Container:
    return Container(
        header=Header(
            width=1 << 20,
            height=3,
            colour=Colour.GRAY,
            flags=Flags.ADAPTERS | Flags.ALPHA | Flags.ICC,
            model_id="fedcba9876543210",
            rate=65535,
            latent_crc=0x01020304,
            tile=255,
            effort=5,
        ),
        sections={
            Section.ICC: b"icc" * 50,
            Section.LATENTS: b"L" * 200,
            Section.HYPERLATENTS: b"",
            Section.ALPHA: b"A",
            Section.ADAPTERS: b"adapt",
        },
    )


# ---- primitives -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (1 << 20, b"\x80\x80\x40"),
        (2**32 - 1, b"\xff\xff\xff\xff\x0f"),
    ],
)
def test_varint_encoding(value: int, encoded: bytes) -> None:
    assert write_varint(value) == encoded
    reader = ctr._Reader(encoded, len(encoded))
    assert reader.varint("x") == value
    assert reader.pos == len(encoded)


def test_varint_rejects_negative_and_overlong() -> None:
    with pytest.raises(ValueError):
        write_varint(-1)
    six = b"\x80\x80\x80\x80\x80\x01"
    with pytest.raises(ContainerError, match="varint"):
        ctr._Reader(six, len(six)).varint("x")


# ---- hand-built file vs the writer ------------------------------------------------------


def test_writer_produces_hand_built_bytes() -> None:
    expected = minimal_file()
    assert expected[:4] == bytes([0x55, 0x44, 0x49, 0x43])
    assert write(minimal_container()) == expected


def test_parse_hand_built_file() -> None:
    cont, layout = parse_with_layout(minimal_file())
    h = cont.header
    assert (h.version, h.width, h.height) == (4, 300, 5)
    assert (h.tile, h.tile_pixels, h.effort) == (16, 1024, 2)
    assert h.colour == Colour.RGB
    assert h.flags == Flags(0)
    assert h.model_id == MODEL_HEX
    assert h.rate == 640 and h.quality == 2.5
    assert h.latent_crc == 0xDEADBEEF
    assert cont.sections == {Section.HYPERLATENTS: HYPER, Section.LATENTS: LATENTS}
    assert cont.section(Section.LATENTS) == LATENTS
    with pytest.raises(ContainerError, match="alpha"):
        cont.section(Section.ALPHA)
    # magic 4 + version 1 + width 2 + height 1 + colour 1 + flags 1 + id 8 + rate 2 + crc 4
    # + tile 1 + effort 1 + count 1
    assert layout.header == 27
    assert layout.section_overhead == 4  # two (tag, 1-byte length) pairs
    assert layout.trailer == 4
    assert layout.overhead == 35
    assert layout.total == len(minimal_file()) == 35 + len(HYPER) + len(LATENTS)


def test_version_1_files_are_still_read() -> None:
    """Version 1 had no tile and effort fields: they read as 0 (untiled, no adaptation)."""
    cont, layout = parse_with_layout(seal(header_bytes(version=1) + SECTIONS))
    h = cont.header
    assert (h.version, h.tile, h.effort, h.rate) == (1, 0, 0, 640)
    assert layout.header == 25
    assert cont.sections[Section.LATENTS] == LATENTS
    # Written back as version 1 it is byte-identical.
    assert write(cont) == seal(header_bytes(version=1) + SECTIONS)
    assert layout.sections == {"hyperlatents": 4, "latents": 8}


def test_round_trip_every_field() -> None:
    original = full_container()
    data = write(original)
    back = parse(data, max_pixels=1 << 40)
    assert back.header == original.header
    assert back.sections == original.sections
    # Sections in increasing tag order whatever the dict order; lengths as varints.
    expected_sections = (
        b"\x05"  # section count
        + b"\x01\x00"
        + b"\x02\xc8\x01" + b"L" * 200
        + b"\x03\x05adapt"
        + b"\x04\x01A"
        + b"\x05\x96\x01" + b"icc" * 50
    )
    assert data[:-4].endswith(expected_sections)
    assert data[4:5] == b"\x04"  # version
    assert data[5:8] == b"\x80\x80\x40"  # width 2^20
    assert data[8:11] == b"\x03\x01\x07"  # height, colour gray, all three flags
    assert data[11:19] == bytes.fromhex("fedcba9876543210")
    assert data[19:25] == b"\xff\xff\x04\x03\x02\x01"  # rate, latent_crc (little-endian)
    assert data[25:27] == b"\xff\x05"  # tile, effort


@pytest.mark.parametrize("width, height", [(1, 1), (127, 128), (1 << 20, 1), (1, 1 << 20)])
def test_round_trip_dimensions(width: int, height: int) -> None:
    c = minimal_container()
    c.header.width, c.header.height = width, height
    back = parse(write(c), max_pixels=1 << 40).header
    assert (back.width, back.height) == (width, height)


def test_writer_refuses_inconsistent_headers() -> None:
    c = minimal_container()
    c.header.flags = Flags.ALPHA
    with pytest.raises(ValueError, match="flags"):
        write(c)
    c = minimal_container()
    c.sections[Section.ICC] = b"x"
    with pytest.raises(ValueError, match="flags"):
        write(c)
    for width in (0, (1 << 20) + 1):
        c = minimal_container()
        c.header.width = width
        with pytest.raises(ValueError):
            write(c)
    c = minimal_container()
    c.header.model_id = "xyz"
    with pytest.raises(ValueError, match="model id"):
        write(c)
    c = minimal_container()
    c.header.rate = 1 << 16
    with pytest.raises(ValueError):
        write(c)


# ---- damage ----------------------------------------------------------------------------


def test_truncation_at_every_offset() -> None:
    data = write(full_container())
    for cut in range(len(data)):
        with pytest.raises(ContainerError):
            parse(data[:cut], max_pixels=1 << 40)


def test_every_single_byte_corruption_is_caught() -> None:
    data = minimal_file()
    for pos in range(len(data)):
        for xor in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[pos] ^= xor
            with pytest.raises(ContainerError) as info:
                parse(bytes(bad))
            if pos >= 4:
                assert "checksum" in str(info.value) or "damaged" in str(info.value)


def test_appended_bytes_caught() -> None:
    with pytest.raises(ContainerError):
        parse(minimal_file() + b"\x00")


def test_empty_and_bad_magic() -> None:
    with pytest.raises(ContainerError, match="empty"):
        parse(b"")
    with pytest.raises(ContainerError, match="magic"):
        parse(seal(b"UDIX" + minimal_file()[4:-4]))
    with pytest.raises(ContainerError, match="magic"):
        parse(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ContainerError, match="magic"):
        parse(b"UD")


def test_checksum_checked_before_header() -> None:
    """A damaged file is reported as damaged, even if its version byte is also wrong."""
    body = bytearray(minimal_file())
    body[4] = 9
    with pytest.raises(ContainerError, match="checksum"):
        parse(bytes(body))


@pytest.mark.parametrize("version", [0, 9, 255])
def test_unknown_version(version: int) -> None:
    with pytest.raises(ContainerError, match="version"):
        parse(seal(header_bytes(version=version) + SECTIONS))


@pytest.mark.parametrize("flags", [0x20, 0x80, 0xF0])
def test_reserved_flags(flags: int) -> None:
    with pytest.raises(ContainerError, match="reserved"):
        parse(seal(header_bytes(flags=flags) + SECTIONS))


def test_loop_filter_flag_is_reserved_before_version_3() -> None:
    with pytest.raises(ContainerError, match="reserved"):
        parse(seal(header_bytes(version=2, flags=0x08) + SECTIONS))


def test_metadata_flag_is_reserved_before_version_4() -> None:
    with pytest.raises(ContainerError, match="reserved"):
        parse(seal(header_bytes(version=3, flags=0x10) + SECTIONS))


def test_resample_flag_is_reserved_before_version_7() -> None:
    with pytest.raises(ContainerError, match="reserved"):
        parse(seal(header_bytes(version=6, flags=0x40) + SECTIONS))


def test_version_3_files_are_still_read() -> None:
    cont = parse(seal(header_bytes(version=3) + SECTIONS))
    assert cont.header.version == 3
    assert write(cont) == seal(header_bytes(version=3) + SECTIONS)


def test_version_2_files_are_still_read() -> None:
    cont = parse(seal(header_bytes(version=2) + SECTIONS))
    assert (cont.header.version, cont.header.tile, cont.header.effort) == (2, 16, 2)
    assert write(cont) == seal(header_bytes(version=2) + SECTIONS)


def test_loop_filter_section_needs_its_flag() -> None:
    lf_section = b"\x06\x03abc"
    cont = parse(seal(header_bytes(flags=0x08, n_sections=b"\x03") + SECTIONS + lf_section))
    assert cont.header.flags == Flags.LOOP_FILTER and cont.sections[Section.LOOP_FILTER] == b"abc"
    with pytest.raises(ContainerError, match="loop_filter"):
        parse(seal(header_bytes(n_sections=b"\x03") + SECTIONS + lf_section))
    with pytest.raises(ContainerError, match="loop_filter"):
        parse(seal(header_bytes(flags=0x08) + SECTIONS))


def test_bad_colour() -> None:
    with pytest.raises(ContainerError, match="colour"):
        parse(seal(header_bytes(colour=2) + SECTIONS))


@pytest.mark.parametrize("tag", [0, 10, 127])
def test_unknown_critical_section_tag(tag: int) -> None:
    body = header_bytes(n_sections=b"\x03") + SECTIONS + bytes([tag, 1, 0])
    with pytest.raises(ContainerError, match="unknown section tag"):
        parse(seal(body))


@pytest.mark.parametrize("tag", [129, 200, 255])
def test_unknown_ancillary_section_is_skipped(tag: int) -> None:
    """Tags ≥ 128 are ancillary (spec §3): skipped, and still counted in the layout."""
    body = header_bytes(n_sections=b"\x03") + SECTIONS + bytes([tag, 2, 7, 9])
    cont, layout = parse_with_layout(seal(body))
    assert set(cont.sections) == {Section.HYPERLATENTS, Section.LATENTS}
    assert cont.ancillary == {tag: bytes([7, 9])}
    assert layout.sections[f"ancillary_{tag}"] == 2
    # Written back unchanged, and out-of-order / repeated ancillary tags are still refused.
    assert write(cont) == seal(body)
    with pytest.raises(ContainerError, match="out of order"):
        parse(seal(header_bytes(n_sections=b"\x04") + SECTIONS + bytes([tag, 0, tag, 0])))


def test_ancillary_writer_refuses_critical_tags() -> None:
    cont = parse(minimal_file())
    with pytest.raises(ValueError, match="ancillary"):
        write(replace(cont, ancillary={9: b""}))


def test_section_length_past_end() -> None:
    body = header_bytes() + b"\x01\x04" + HYPER + b"\x02\x09" + LATENTS
    with pytest.raises(ContainerError, match="past the end"):
        parse(seal(body))
    # a length that only fits if it swallowed the trailer
    body = header_bytes() + b"\x01\x04" + HYPER + b"\x02\x0c" + LATENTS
    with pytest.raises(ContainerError, match="past the end"):
        parse(seal(body))
    # a huge varint length
    body = header_bytes() + b"\x01\xff\xff\xff\xff\x0f" + HYPER
    with pytest.raises(ContainerError):
        parse(seal(body))


def test_duplicate_and_out_of_order_sections() -> None:
    dup = header_bytes(n_sections=b"\x03") + b"\x01\x04" + HYPER + b"\x01\x04" + HYPER + b"\x02\x08" + LATENTS
    with pytest.raises(ContainerError, match="order|repeated"):
        parse(seal(dup))
    swapped = header_bytes() + b"\x02\x08" + LATENTS + b"\x01\x04" + HYPER
    with pytest.raises(ContainerError, match="order|repeated"):
        parse(seal(swapped))


def test_missing_required_sections() -> None:
    only_latents = header_bytes(n_sections=b"\x01") + b"\x02\x08" + LATENTS
    with pytest.raises(ContainerError, match="hyperlatents"):
        parse(seal(only_latents))
    only_hyper = header_bytes(n_sections=b"\x01") + b"\x01\x04" + HYPER
    with pytest.raises(ContainerError, match="latents"):
        parse(seal(only_hyper))


def test_section_count_disagrees_with_content() -> None:
    with pytest.raises(ContainerError):
        parse(seal(header_bytes(n_sections=b"\x01") + SECTIONS))  # trailing bytes
    with pytest.raises(ContainerError):
        parse(seal(header_bytes(n_sections=b"\x03") + SECTIONS))  # one missing
    with pytest.raises(ContainerError, match="too many"):
        parse(seal(header_bytes(n_sections=b"\xff\xff\x03") + SECTIONS))


@pytest.mark.parametrize(
    "flags, extra",
    [
        (Flags.ALPHA, b""),  # flag without section
        (Flags.ADAPTERS, b""),
        (Flags.ICC, b""),
        (0, b"\x04\x01A"),  # section without flag
        (Flags.ADAPTERS, b"\x04\x01A"),  # flag for another section
        (Flags.ALPHA | Flags.ICC, b"\x04\x01A"),
    ],
)
def test_flags_disagree_with_sections(flags: int, extra: bytes) -> None:
    n = b"\x03" if extra else b"\x02"
    body = header_bytes(flags=int(flags), n_sections=n) + SECTIONS + extra
    with pytest.raises(ContainerError, match="flags"):
        parse(seal(body))


def test_flags_agreeing_with_sections_accepted() -> None:
    body = header_bytes(flags=int(Flags.ALPHA), n_sections=b"\x03") + SECTIONS + b"\x04\x01A"
    cont = parse(seal(body))
    assert cont.sections[Section.ALPHA] == b"A"
    assert cont.header.flags == Flags.ALPHA


@pytest.mark.parametrize(
    "width, height, match",
    [
        (b"\x00", b"\x05", "size"),
        (b"\xac\x02", b"\x00", "size"),
        (b"\x81\x80\x40", b"\x01", "size"),  # 2^20 + 1
        (write_varint(100000), write_varint(100000), "limit"),
        (write_varint(1 << 20), write_varint(1 << 20), "limit"),
    ],
)
def test_bad_dimensions(width: bytes, height: bytes, match: str) -> None:
    with pytest.raises(ContainerError, match=match):
        parse(seal(header_bytes(width=width, height=height) + SECTIONS))


def test_huge_dimensions_refused_before_allocation() -> None:
    data = seal(header_bytes(width=write_varint(100000), height=write_varint(100000)) + SECTIONS)
    tracemalloc.start()
    try:
        with pytest.raises(ContainerError, match="limit"):
            parse(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_max_pixels_parameter() -> None:
    data = minimal_file()  # 300 × 5 = 1500 pixels
    assert parse(data, max_pixels=1500).header.width == 300
    with pytest.raises(ContainerError, match="limit"):
        parse(data, max_pixels=1499)


def test_default_pixel_limit_is_64_megapixels() -> None:
    ok = seal(header_bytes(width=write_varint(8000), height=write_varint(8000)) + SECTIONS)
    assert parse(ok).header.width == 8000
    over = seal(header_bytes(width=write_varint(8001), height=write_varint(8000)) + SECTIONS)
    with pytest.raises(ContainerError, match="limit"):
        parse(over)


# ---- the section table ------------------------------------------------------------------


def test_enums_and_flag_masks_come_from_the_section_table() -> None:
    from udic import sections

    assert [s.value for s in Section] == [m.TAG for m in sections.TABLE]
    assert [s.name.lower() for s in Section] == [m.NAME for m in sections.TABLE]
    assert {f.name.lower(): int(f) for f in Flags} == {m.NAME: m.FLAG for m in sections.TABLE if m.FLAG}
    # The historical values (spec §2, §3) are what the table says.
    assert (Flags.ADAPTERS, Flags.ALPHA, Flags.ICC, Flags.LOOP_FILTER, Flags.METADATA) == (1, 2, 4, 8, 16)
    assert [ctr.allowed_flags(v) for v in (1, 2, 3, 4)] == [0x07, 0x07, 0x0F, 0x1F]


def test_every_section_module_has_the_same_shape() -> None:
    from udic import sections

    for m in sections.TABLE:
        for name in ("TAG", "NAME", "FLAG", "SINCE_VERSION", "REQUIRED", "MODES", "encode", "decode", "describe"):
            assert hasattr(m, name), (m.__name__, name)
        # The critical sections are either required or flagged; the pixels flag selects
        # the file's mode, in which its section is required.
        assert m.REQUIRED == (m.FLAG == 0) or m.NAME == sections.pixels.NAME or m.TAG >= sections.ANCILLARY_TAG_MIN
        assert m.encode(None) is None or m.REQUIRED


def test_describe_sections_lists_every_known_section() -> None:
    cont = parse(minimal_file())
    described = ctr.describe_sections(cont)
    assert list(described) == [s.name.lower() for s in Section]
    assert described["hyperlatents"] == {"present": True, "bytes": len(HYPER)}
    assert described["icc"] == {"present": False, "bytes": 0}


def test_container_and_sections_import_without_torch() -> None:
    """``udic info`` reads files without torch or compressai."""
    import subprocess
    import sys

    code = ("import sys; import udic.container, udic.sections; "
            "bad = [m for m in ('torch', 'compressai') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_writer_refuses_a_header_the_parser_would_refuse() -> None:
    """A writer never makes a file that its own parser refuses: unknown versions, sections a
    version cannot hold, a CRC or varint past its width (a struct.error had escaped)."""
    from dataclasses import replace

    from udic.wire import write_varint

    good = ctr.Container(header=ctr.Header(width=4, height=4, colour=ctr.Colour.RGB, flags=ctr.Flags(0),
                                           model_id="00" * 8, rate=0, latent_crc=0, version=ctr.VERSION),
                         sections={ctr.Section.HYPERLATENTS: b"", ctr.Section.LATENTS: b""})
    ctr.parse(ctr.write(good))
    for changes, match in (({"version": 0}, "version"), ({"version": 256}, "version"),
                           ({"latent_crc": 1 << 32}, "latent_crc"), ({"version": 1, "effort": 2}, "version-1")):
        with pytest.raises(ValueError, match=match):
            ctr.write(replace(good, header=replace(good.header, **changes)))
    meta = replace(good, sections={**good.sections, ctr.Section.METADATA: b"x"},
                   header=replace(good.header, version=3, flags=ctr.Flags.METADATA))
    with pytest.raises(ValueError, match="cannot hold"):
        ctr.write(meta)
    with pytest.raises(ValueError, match="more than 5 bytes"):
        write_varint(1 << 35)
    assert len(write_varint((1 << 35) - 1)) == 5
