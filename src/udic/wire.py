"""The byte-level primitives every part of a .udic file is written with (spec §1).

Kept apart from ``container`` so the section codecs (``udic.sections``) can use them
while ``container`` derives its section table from those codecs, without a cycle.
Only the standard library: ``udic info`` reads files without torch.
"""

from __future__ import annotations

import struct
import zlib

from .errors import ContainerError

VARINT_MAX_BYTES = 5


def write_varint(value: int, max_bytes: int = VARINT_MAX_BYTES) -> bytes:
    """Unsigned LEB128 (spec §1) of at most ``max_bytes`` bytes, the most its reader takes."""
    if value < 0:
        raise ValueError("varint must be non-negative")
    if value >= 1 << (7 * max_bytes):
        raise ValueError(f"varint {value} needs more than {max_bytes} bytes")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def inflate_section(payload: bytes, limit: int, name: str) -> bytes:
    """zlib-inflate a section's payload, refusing more than ``limit`` bytes (no zlib
    bombs), a truncated stream and bytes after it."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(payload, limit + 1)
    except zlib.error:
        raise ContainerError(f"corrupt {name} section") from None
    if len(raw) > limit or inflater.unconsumed_tail:
        raise ContainerError(f"{name} section inflates past {limit >> 20} MiB")
    if not inflater.eof or inflater.unused_data:
        raise ContainerError(f"corrupt {name} section (truncated or trailing bytes)")
    return raw


class Reader:
    """Reads typed fields from ``data[pos:end]``; running past ``end`` is a ContainerError
    ("truncated file"), never an IndexError."""

    def __init__(self, data: bytes, end: int | None = None, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise ContainerError(f"truncated file (while reading {what})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def rest(self) -> bytes:
        """Everything up to ``end`` (e.g. a section's trailing ANS words)."""
        return self.take(self.remaining, "rest")

    def varint(self, what: str) -> int:
        value = 0
        for i in range(VARINT_MAX_BYTES):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        raise ContainerError(f"invalid varint in {what}")

    def field(self, kind: str, name: str) -> int | bytes:
        if kind == "u8":
            return self.take(1, name)[0]
        if kind == "u16":
            return struct.unpack("<H", self.take(2, name))[0]
        if kind == "u32":
            return struct.unpack("<I", self.take(4, name))[0]
        if kind == "varint":
            return self.varint(name)
        if kind == "bytes8":
            return self.take(8, name)
        raise AssertionError(kind)


def write_field(kind: str, value: int | bytes) -> bytes:
    if kind == "u8":
        return struct.pack("<B", value)
    if kind == "u16":
        return struct.pack("<H", value)
    if kind == "u32":
        return struct.pack("<I", value)
    if kind == "varint":
        return write_varint(int(value))  # type: ignore[arg-type]
    if kind == "bytes8":
        assert isinstance(value, bytes) and len(value) == 8
        return value
    raise AssertionError(kind)
