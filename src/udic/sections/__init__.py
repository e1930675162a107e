"""The table of .udic sections (spec §3): one module per section, one row per module.

Everything that depends on the set of sections is derived from ``TABLE``: the
container's ``Section`` and ``Flags`` enums and allowed flag bits, ``Codec``'s encode
and decode loops, and ``describe_sections`` for ``udic info``.  Adding a section =
one module of the same shape (see ``base``) + one row here + its part of the spec.

Tags below ``ANCILLARY_TAG_MIN`` are critical (a decoder refuses one it does not know);
tags from it up are ancillary (skipped when unknown).  No module here imports torch.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import adapters, alpha, hyperlatents, icc, latents, loop_filter, metadata, note, pixels, resample
from .base import ANCILLARY_TAG_MIN, DecodeContext

if TYPE_CHECKING:
    from ..container import Container

# In tag order; the decoder checks the side sections in this order (spec §9 step 4).
TABLE: tuple[ModuleType, ...] = (hyperlatents, latents, adapters, alpha, icc, loop_filter, metadata, pixels, resample,
                                 note)
BY_TAG: dict[int, ModuleType] = {m.TAG: m for m in TABLE}
BY_NAME: dict[str, ModuleType] = {m.NAME: m for m in TABLE}
# The entropy-coded pair belongs to the latent codec, the pixels section to the pixel
# coder; the rest are "side" sections of a learned file.
LATENT_SECTIONS = ("hyperlatents", "latents")
SIDE_SECTIONS: tuple[ModuleType, ...] = tuple(
    m for m in TABLE if m.NAME not in LATENT_SECTIONS and m.NAME not in (pixels.NAME, note.NAME))

# A file's mode (spec §3): "pixels" when the pixels flag is set, else "learned".  Each
# section lists the modes it may appear in; REQUIRED means required in those modes.
MODES = ("learned", "pixels")


def file_mode(flags: int) -> str:
    return "pixels" if flags & pixels.FLAG else "learned"


def _check_table() -> None:
    tags = [m.TAG for m in TABLE]
    if tags != sorted(set(tags)) or not all(0 < t < 256 for t in tags):
        raise AssertionError("section tags must be unique u8 values in table order")
    flags = [m.FLAG for m in TABLE if m.FLAG]
    if len(set(flags)) != len(flags) or any(f & (f - 1) for f in flags) or max(flags, default=0) > 0x80:
        raise AssertionError("section flags must be distinct single bits of a u8")
    for m in TABLE:
        if not m.MODES or set(m.MODES) - set(MODES):
            raise AssertionError(f"section {m.NAME} must list the file modes it belongs to")
        if m.TAG >= ANCILLARY_TAG_MIN and (m.FLAG or m.REQUIRED):
            raise AssertionError(f"ancillary section {m.NAME} can have neither a flag nor be required")


_check_table()


def is_ancillary(tag: int) -> bool:
    return tag >= ANCILLARY_TAG_MIN


def allowed_flags(version: int) -> int:
    """The flag bits a file of this version may set (the others are reserved, must be 0)."""
    bits = 0
    for m in TABLE:
        if m.FLAG and m.SINCE_VERSION <= version:
            bits |= m.FLAG
    return bits


def encode_sections(values: dict[str, Any]) -> dict[int, bytes]:
    """``{name: value}`` → ``{tag: payload}`` for every section that has something to send."""
    unknown = set(values) - set(BY_NAME)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}")
    out = {}
    for m in TABLE:
        payload = m.encode(values.get(m.NAME))
        if payload is not None:
            out[m.TAG] = payload
    return out


def decode_side_sections(payloads: dict[int, bytes], context: DecodeContext) -> dict[str, Any]:
    """Decode (and so check, spec §9 step 4) every side section present, in table order."""
    return {m.NAME: m.decode(payloads[m.TAG], context) for m in SIDE_SECTIONS if m.TAG in payloads}


def describe_sections(container: "Container") -> dict[str, dict]:
    """Every known section: ``{"present": bool, "bytes": int, …details}`` for ``udic info``.

    (``api.info`` can build ``FileInfo`` from this instead of one field per section.)
    """
    out = {}
    for m in TABLE:
        payload = container.sections.get(m.TAG)  # type: ignore[call-overload]
        out[m.NAME] = {"present": False, "bytes": 0} if payload is None else {"present": True, **m.describe(payload)}
    for tag, payload in sorted(getattr(container, "ancillary", {}).items()):
        out[f"ancillary_{tag}"] = {"present": True, "bytes": len(payload), "skipped": True}
    return out


__all__ = [
    "ANCILLARY_TAG_MIN",
    "BY_NAME",
    "BY_TAG",
    "DecodeContext",
    "SIDE_SECTIONS",
    "TABLE",
    "allowed_flags",
    "decode_side_sections",
    "describe_sections",
    "encode_sections",
    "file_mode",
    "is_ancillary",
]
