"""The .udic container: a typed header, length-prefixed sections, a CRC trailer.

``bitstream_spec.md`` is normative.  The header is declared once as a list of typed,
named fields (as Cool-Chic does) and both the writer and the parser walk that list,
so the two cannot drift apart.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

from . import sections as section_table
from .errors import ContainerError
from .geometry import TILE_UNIT  # noqa: F401 (re-exported)
from .rate import to_quality
from .sections import ANCILLARY_TAG_MIN, describe_sections  # noqa: F401 (re-exported)
from .wire import Reader, inflate_section, write_field, write_varint  # noqa: F401 (re-exported)

MAGIC = b"UDIC"
VERSION = 4  # written for learned files; 1 (no tile/effort), 2 (no loop filter) and 3 (no metadata) are still read
PIXELS_VERSION = 5  # the first version with the pixels section: written for pixel-coded files
CHANNEL_CONTEXT_VERSION = 6  # learned files whose model codes latents channel-conditionally (spec §5.3)
RESAMPLE_VERSION = 7  # learned files coded at reduced resolution (the resample section, spec §12)
FILTER_CLASSES_VERSION = 8  # learned files whose loop filter has activity classes (spec §8)
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8)
NO_MODEL_ID = "0" * 16  # a pixel-coded file names no model
MAX_DIMENSION = 1 << 20
DEFAULT_MAX_PIXELS = 64_000_000  # the same limit as imageio.DEFAULT_MAX_PIXELS for inputs


class Colour(IntEnum):
    RGB = 0
    GRAY = 1


# Derived from the section table (udic.sections): one member per section / flag bit.
Section = IntEnum("Section", [(m.NAME.upper(), m.TAG) for m in section_table.TABLE])  # type: ignore[misc]
Section.__doc__ = "Section tags (spec §3), from udic.sections.TABLE."
Flags = IntFlag("Flags", [(m.NAME.upper(), m.FLAG) for m in section_table.TABLE if m.FLAG])  # type: ignore[misc]
Flags.__doc__ = "Header flag bits (spec §2), from udic.sections.TABLE."
allowed_flags = section_table.allowed_flags

_FLAG_FOR_SECTION = {Section(m.TAG): Flags(m.FLAG) for m in section_table.TABLE if m.FLAG}
_Reader = Reader  # deprecated private name, kept while callers move to ``Reader``


@dataclass
class Header:
    width: int
    height: int
    colour: Colour
    flags: Flags
    model_id: str  # 16 hex digits
    rate: int  # quality · 256
    latent_crc: int
    tile: int = 0  # synthesis tile side in TILE_UNIT pixels; 0 = the whole image at once
    effort: int = 0  # encoder adaptation effort (informative only)
    version: int = VERSION

    @property
    def quality(self) -> float:
        return to_quality(self.rate)

    @property
    def mode(self) -> str:
        """"learned" (latents decoded by a model) or "pixels" (the integer pixel coder)."""
        return section_table.file_mode(int(self.flags))

    @property
    def tile_pixels(self) -> int:
        return self.tile * TILE_UNIT


# (name, type) in bitstream order; the codec for each type is below.
HEADER_FIELDS: tuple[tuple[str, str], ...] = (
    ("version", "u8"),
    ("width", "varint"),
    ("height", "varint"),
    ("colour", "u8"),
    ("flags", "u8"),
    ("model_id", "bytes8"),
    ("rate", "u16"),
    ("latent_crc", "u32"),
    ("tile", "u8"),  # since version 2
    ("effort", "u8"),  # since version 2
)
_FIELDS_SINCE_V2 = ("tile", "effort")


def header_fields(version: int) -> tuple[tuple[str, str], ...]:
    """The header field list of a format version."""
    if version >= 2:
        return HEADER_FIELDS
    return tuple(f for f in HEADER_FIELDS if f[0] not in _FIELDS_SINCE_V2)


@dataclass
class Container:
    header: Header
    sections: dict[Section, bytes] = field(default_factory=dict)
    # Ancillary sections (tag ≥ 128) this decoder does not know: skipped, kept for info.
    ancillary: dict[int, bytes] = field(default_factory=dict)

    def section(self, kind: Section) -> bytes:
        try:
            return self.sections[kind]
        except KeyError:
            raise ContainerError(f"missing {kind.name.lower()} section") from None


@dataclass
class Layout:
    """Byte accounting for ``udic info``."""

    total: int
    header: int  # magic + header fields + section count
    section_overhead: int  # tags and lengths
    trailer: int
    sections: dict[str, int]

    @property
    def overhead(self) -> int:
        return self.header + self.section_overhead + self.trailer


def flags_for(tags) -> Flags:  # noqa: ANN001 - section tags (ints or Section members)
    """The header flags that announce these sections (spec §2)."""
    flags = Flags(0)
    for tag in tags:
        flags |= _FLAG_FOR_SECTION.get(Section(tag), Flags(0))
    return flags


# ---- write / parse ---------------------------------------------------------------------


def _header_values(h: Header) -> dict[str, int | bytes]:
    try:
        model_bytes = bytes.fromhex(h.model_id)
    except ValueError:
        raise ValueError(f"model id must be 16 hex digits, got {h.model_id!r}") from None
    if len(model_bytes) != 8:
        raise ValueError(f"model id must be 16 hex digits, got {h.model_id!r}")
    return {
        "version": h.version,
        "width": h.width,
        "height": h.height,
        "colour": int(h.colour),
        "flags": int(h.flags),
        "model_id": model_bytes,
        "rate": h.rate,
        "latent_crc": h.latent_crc,
        "tile": h.tile,
        "effort": h.effort,
    }


def write(container: Container) -> bytes:
    h = container.header
    if not (1 <= h.width <= MAX_DIMENSION and 1 <= h.height <= MAX_DIMENSION):
        raise ValueError("image dimensions out of range")
    if not 0 <= h.rate < 1 << 16:
        raise ValueError("rate out of range")
    if not (0 <= h.tile < 256 and 0 <= h.effort < 256):
        raise ValueError("tile or effort out of range")
    if int(flags_for(container.sections)) != int(h.flags):
        raise ValueError("header flags disagree with the sections present")
    # What the parser would refuse of the header itself: a writer never makes a file it cannot read.
    if h.version not in READABLE_VERSIONS:
        raise ValueError(f"format version {h.version} is not one this udic reads")
    if int(h.flags) & ~allowed_flags(h.version):
        raise ValueError(f"a version-{h.version} file cannot hold these sections")
    if h.version < 2 and (h.tile or h.effort):
        raise ValueError("a version-1 file has no tile or effort field")
    if not 0 <= h.latent_crc < 1 << 32:
        raise ValueError("latent_crc out of range")
    out = bytearray(MAGIC)
    values = _header_values(h)
    for name, kind in header_fields(h.version):
        out += write_field(kind, values[name])
    payloads = {int(k): v for k, v in container.sections.items()}
    for tag, payload in container.ancillary.items():
        if tag < ANCILLARY_TAG_MIN or tag in payloads:
            raise ValueError(f"section tag {tag} is not an ancillary one")
        payloads[tag] = payload
    out += write_varint(len(payloads))
    for tag in sorted(payloads):
        out.append(tag)
        out += write_varint(len(payloads[tag]))
        out += payloads[tag]
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


def with_note(data: bytes, note: str | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The same file with its ``note`` section (the encoder's account, ancillary: spec §3)
    replaced, or removed for None: no section the decoder reads changes."""
    cont = parse(data, max_pixels=max_pixels)
    cont.sections.pop(Section.NOTE, None)
    payload = section_table.note.encode(note)
    if payload is not None:
        cont.sections[Section.NOTE] = payload
    return write(cont)


def parse(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Container:
    """Parse and validate a .udic file; raises ContainerError with a one-line reason."""
    container, _ = parse_with_layout(data, max_pixels)
    return container


def parse_with_layout(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Container, Layout]:
    if len(data) == 0:
        raise ContainerError("empty file")
    if not data.startswith(MAGIC[: min(4, len(data))]) or len(data) < len(MAGIC):
        raise ContainerError("not a .udic file (bad magic)")
    if len(data) < len(MAGIC) + 1 + 4:
        raise ContainerError("truncated file")
    body_end = len(data) - 4
    (stored_crc,) = struct.unpack("<I", data[body_end:])
    if zlib.crc32(data[:body_end]) != stored_crc:
        raise ContainerError("damaged file (checksum mismatch)")
    reader = Reader(data, body_end, pos=len(MAGIC))
    version = reader.field("u8", "version")
    if version not in READABLE_VERSIONS:
        raise ContainerError(
            f"unsupported format version {version} (this udic reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    values: dict[str, int | bytes] = {"version": version, "tile": 0, "effort": 0}
    for name, kind in header_fields(version)[1:]:
        values[name] = reader.field(kind, name)
    width, height = int(values["width"]), int(values["height"])  # type: ignore[arg-type]
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
        raise ContainerError(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ContainerError(
            f"image is {width}x{height}, over the {max_pixels}-pixel limit (use --allow-large)"
        )
    colour = int(values["colour"])  # type: ignore[arg-type]
    if colour not in (0, 1):
        raise ContainerError(f"invalid colour mode {colour}")
    flags = int(values["flags"])  # type: ignore[arg-type]
    if flags & ~allowed_flags(version):
        raise ContainerError("reserved flag bits are set")
    header = Header(
        width=width,
        height=height,
        colour=Colour(colour),
        flags=Flags(flags),
        model_id=bytes(values["model_id"]).hex(),  # type: ignore[arg-type]
        rate=int(values["rate"]),  # type: ignore[arg-type]
        latent_crc=int(values["latent_crc"]),  # type: ignore[arg-type]
        tile=int(values["tile"]),  # type: ignore[arg-type]
        effort=int(values["effort"]),  # type: ignore[arg-type]
        version=version,
    )
    n_sections = reader.varint("section count")
    header_bytes = reader.pos
    if n_sections > 255:  # tags are distinct u8 values
        raise ContainerError(f"too many sections ({n_sections})")
    sections: dict[Section, bytes] = {}
    ancillary: dict[int, bytes] = {}
    section_overhead = 0
    last_tag = 0
    for _ in range(n_sections):
        start = reader.pos
        tag = reader.field("u8", "section tag")
        length = reader.varint("section length")
        if reader.pos + length > body_end:
            raise ContainerError("section length runs past the end of the file")
        known = tag in section_table.BY_TAG
        if not known and not section_table.is_ancillary(int(tag)):  # type: ignore[arg-type]
            raise ContainerError(f"unknown section tag {tag}")  # critical: this decoder cannot do without it
        if tag <= last_tag:
            raise ContainerError("sections out of order or repeated")
        last_tag = int(tag)  # type: ignore[arg-type]
        section_overhead += reader.pos - start
        if known:
            kind = Section(tag)
            sections[kind] = reader.take(length, kind.name.lower())
        else:  # ancillary and unknown: skipped (spec §3)
            ancillary[int(tag)] = reader.take(length, f"ancillary section {tag}")  # type: ignore[arg-type]
    if reader.pos != body_end:
        raise ContainerError("unexpected bytes after the last section")
    mode = section_table.file_mode(flags)
    for m in section_table.TABLE:
        if mode not in m.MODES and m.TAG in sections:
            raise ContainerError(f"a {mode}-coded file cannot have a {m.NAME} section")
        if m.REQUIRED and mode in m.MODES and m.TAG not in sections:
            raise ContainerError(f"missing {m.NAME} section")
    for kind, flag in _FLAG_FOR_SECTION.items():
        if bool(flags & flag) != (kind in sections):
            raise ContainerError(f"flags disagree with the {kind.name.lower()} section")
    if mode == "pixels" and (header.model_id != NO_MODEL_ID or header.rate or header.tile):
        raise ContainerError("a pixel-coded file must have a zero model id, rate and tile")
    if mode == "pixels" and version != PIXELS_VERSION:  # (§11: versions 6-8 describe learned files only)
        raise ContainerError(f"a pixel-coded file must be version {PIXELS_VERSION}, not {version}")
    layout = Layout(
        total=len(data),
        header=header_bytes,
        section_overhead=section_overhead,
        trailer=4,
        sections={k.name.lower(): len(v) for k, v in sections.items()}
        | {f"ancillary_{t}": len(v) for t, v in ancillary.items()},
    )
    return Container(header=header, sections=sections, ancillary=ancillary), layout
