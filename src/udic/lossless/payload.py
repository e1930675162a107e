"""Byte layout helpers with bounds checks.

Every read is checked against the bytes remaining, so a truncated or damaged
payload always ends in one ``ContainerError`` line instead of an ``IndexError``
or a huge allocation.
"""

from __future__ import annotations

import numpy as np

from ..errors import ContainerError
from ..wire import write_varint


class Writer:
    """Appends fields to a growing byte buffer."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> None:
        if not 0 <= value < 256:
            raise ValueError(f"u8 out of range: {value}")
        self._parts.append(bytes([value]))

    def varint(self, value: int) -> None:
        """LEB128: 7 bits per byte, low group first, high bit = more bytes follow (at most 6, as
        ``Reader.varint`` takes)."""
        self._parts.append(write_varint(value, max_bytes=6))

    def svarint(self, value: int) -> None:
        """Signed varint through zig-zag (0, -1, 1, -2, … → 0, 1, 2, 3, …)."""
        self.varint(2 * value if value >= 0 else -2 * value - 1)

    def raw(self, data: bytes) -> None:
        self._parts.append(bytes(data))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Reads fields from a payload; every overrun raises ``ContainerError``."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(bytes(data))
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self.pos

    def _need(self, count: int, what: str) -> None:
        if count < 0 or count > self.remaining:
            raise ContainerError(f"lossless payload is truncated (reading {what})")

    def u8(self, what: str = "a byte") -> int:
        self._need(1, what)
        value = self._data[self.pos]
        self.pos += 1
        return value

    def varint(self, what: str = "a number", limit: int = 1 << 40) -> int:
        """LEB128 of at most 6 bytes, refused above ``limit`` (a sane cap per field)."""
        value = 0
        for shift in range(0, 42, 7):
            byte = self.u8(what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > limit:
                    raise ContainerError(f"lossless payload: {what} {value} exceeds the limit {limit}")
                return value
        raise ContainerError(f"lossless payload: {what} is not a valid number")

    def svarint(self, what: str = "a number", limit: int = 1 << 40) -> int:
        u = self.varint(what, 2 * limit + 1)
        return u // 2 if u % 2 == 0 else -(u + 1) // 2

    def raw(self, count: int, what: str) -> bytes:
        self._need(count, what)
        out = bytes(self._data[self.pos : self.pos + count])
        self.pos += count
        return out

    def u8_array(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.raw(count, what), dtype=np.uint8)

    def rest(self) -> bytes:
        out = bytes(self._data[self.pos :])
        self.pos = len(self._data)
        return out
