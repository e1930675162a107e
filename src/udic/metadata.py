"""EXIF and XMP carried through a .udic file (bitstream_spec.md §10).

Photos carry their camera, date, GPS and editing history in EXIF and XMP; a codec
used in place of ``cjxl`` or ``avifenc`` keeps them unless told not to (``udic
encode --strip``).  They travel as one zlib-compressed section of typed records.
The EXIF orientation is not among them: the encoder applies it to the pixels first.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import IntEnum

from .wire import Reader, inflate_section, write_varint
from .errors import ContainerError

MAX_METADATA_BYTES = 16 << 20  # inflated; the same bound as the ICC section


class Kind(IntEnum):
    EXIF = 1
    XMP = 2


@dataclass(frozen=True)
class Metadata:
    exif: bytes | None = None  # the EXIF block as Pillow reads and writes it
    xmp: bytes | None = None  # the XMP packet (UTF-8 XML)

    def __bool__(self) -> bool:
        return bool(self.exif or self.xmp)


def encode(meta: Metadata) -> bytes:
    """Records (kind u8, length varint, bytes) in kind order, zlib-compressed."""
    raw = bytearray()
    for kind, value in ((Kind.EXIF, meta.exif), (Kind.XMP, meta.xmp)):
        if value:
            raw.append(kind)
            raw += write_varint(len(value))
            raw += value
    if len(raw) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata of {len(raw)} bytes is over {MAX_METADATA_BYTES >> 20} MiB")
    return zlib.compress(bytes(raw), 9)


def decode(payload: bytes) -> Metadata:
    raw = inflate_section(payload, MAX_METADATA_BYTES, "metadata")
    reader = Reader(raw, len(raw))
    found: dict[Kind, bytes] = {}
    while reader.pos < len(raw):
        tag = reader.take(1, "metadata")[0]  # the loop condition guarantees this byte
        if tag not in Kind._value2member_map_ or (found and tag <= max(found)):
            raise ContainerError(f"corrupt metadata section (record kind {tag})")
        try:
            value = reader.take(reader.varint("metadata"), "metadata")
        except ContainerError:
            raise ContainerError("corrupt metadata section (truncated record)") from None
        if not value:
            raise ContainerError("corrupt metadata section (empty record)")
        found[Kind(tag)] = value
    if not found:
        raise ContainerError("corrupt metadata section (no records)")
    return Metadata(exif=found.get(Kind.EXIF), xmp=found.get(Kind.XMP))
