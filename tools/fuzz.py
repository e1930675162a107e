"""Container fuzzing and batch throughput.

``python -m tools.fuzz --cases 10000`` mutates valid ``.udic`` files — bit flips, byte
sets, truncation, insertion, deletion, splicing two files, appended garbage, and
structure-aware edits of header fields and section payloads whose CRC trailer is
*recomputed*, so the parser and the entropy decoders behind the checksum really see
the damage — decodes every case in-process through ``udic.api.decode`` and checks
that each one ends in a clean ``UdicError`` or in an image of the header's size,
within a per-case time limit.  It prints the counts and exits 1 if any case crashed
(another exception type), hung, or decoded to the wrong size.  ``--case K`` replays
one case of a campaign (same ``--seed``) with its mutations and traceback.

``python -m tools.fuzz --batch-throughput`` times ``udic encode``/``udic decode`` over a
batch at ``--jobs 1`` and ``--jobs 2`` and prints images per minute (for the bench).

Without ``--model`` both use a small randomly initialised model built on the spot
(the same shape of network as the real one, a few channels wide), so a campaign
needs no trained weights and runs fast; ``tests/test_fuzz.py`` drives the same
mutation engine with hypothesis.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from udic import container as ctr
from udic.errors import UdicError
from udic.testing import export_tiny_model, isolated_model_env

DEFAULT_TIMEOUT = 10.0

# ---- seed files -------------------------------------------------------------------------


@dataclass
class Seed:
    """A valid file and what it decodes to."""

    name: str
    data: bytes
    pixels: np.ndarray  # the decoded image as an array (mode-dependent channels)


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [
        40 + 160 * xx / max(w - 1, 1),
        40 + 160 * yy / max(h - 1, 1),
        128 + 60 * np.sin((xx + yy) / 9.0),
    ]
    arr = np.stack([p + rng.normal(0, 6, (h, w)) for p in planes], axis=-1)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def make_seeds(codec) -> list[Seed]:
    """Valid files at several qualities, with and without alpha, ICC, adapters, a loop filter and
    reduced resolution."""
    from udic.adapters import Adapter, AdapterSet
    from udic.imageio import LoadedImage
    from udic.loopfilter import CLASS_TAPS, LoopFilter
    from udic.metadata import Metadata

    rng = np.random.default_rng(7)
    top = codec.max_quality
    icc = _srgb_icc()
    ramp = np.tile(np.linspace(0, 255, 30).astype(np.uint8), (20, 1))
    mask = np.full((20, 30), 255, np.uint8)
    mask[5:12, 8:20] = 0

    def adapters(rank: int = 2) -> AdapterSet:
        slots = codec.model.g_s.slots
        out = []
        for slot in (0, len(slots) - 1):
            c = slots[slot].channels
            out.append(Adapter(slot=slot, down=rng.integers(-3, 4, (rank, c)), up=rng.integers(-3, 4, (c, rank))))
        out[0].down[0, 0] = 40  # an escaped weight
        return AdapterSet(adapters=out)

    def loop_filter(k: int, thresholds: tuple[int, ...] = ()) -> LoopFilter:
        taps = rng.integers(-20, 21, (3, 3 * (k * k - 1)))
        if taps.size:
            taps[0, 0] = 5000  # an escaped coefficient
        corrections = rng.integers(-30, 31, (len(thresholds), 3, CLASS_TAPS)) if thresholds else None
        return LoopFilter(k=k, frac_bits=8, taps=taps, gains=rng.integers(-9, 10, (3, 3)),
                          bias=rng.integers(-900, 901, 3), thresholds=thresholds, class_taps=corrections)

    plans: list[tuple[str, LoadedImage, float, object, object]] = [
        ("rgb-40x56-q3", LoadedImage(_smooth(40, 56, 1), "RGB", None, None), 3.0, None, None),
        ("rgb-16x16-q0", LoadedImage(_smooth(16, 16, 2), "RGB", None, None), 0.0, None, None),
        ("rgb-1x1-qmax", LoadedImage(_smooth(1, 1, 3), "RGB", None, None), top, None, None),
        ("rgb-70x130-q2.5", LoadedImage(_smooth(70, 130, 4), "RGB", None, None), min(2.5, top), None, None),
        ("gray-24x33-q1", LoadedImage(np.repeat(_smooth(24, 33, 5)[..., :1], 3, axis=2), "L", None, None), 1.0, None, None),
        ("rgba-ramp-q2", LoadedImage(_smooth(20, 30, 6), "RGB", ramp, None), min(2.0, top), None, None),
        ("rgba-mask-q4", LoadedImage(_smooth(20, 30, 7), "RGB", mask, None), min(4.0, top), None, None),
        ("icc-16x20-q3", LoadedImage(_smooth(16, 20, 8), "RGB", None, icc), 3.0, None, None),
        ("adapters-24x24-q2", LoadedImage(_smooth(24, 24, 9), "RGB", None, None), min(2.0, top), adapters(), None),
        ("filter-24x40-q1", LoadedImage(_smooth(24, 40, 11), "RGB", None, None), 1.0, None, loop_filter(5)),
        ("filter-classes-30x36-q2", LoadedImage(_smooth(30, 36, 13), "RGB", None, None), min(2.0, top), None,
         loop_filter(3, (40, 300, 2000))),  # format version 8
        ("meta-16x24-q2", LoadedImage(_smooth(16, 24, 12), "RGB", None, None,
                                      metadata=Metadata(exif=b"II*\x00\x08\x00\x00\x00" + bytes(40), xmp=b"<x/>" * 20)),
         min(2.0, top), None, None),
        ("all-20x30-q3.5", LoadedImage(_smooth(20, 30, 10), "RGB", ramp, icc, metadata=Metadata(xmp=b"<x/>")),
         min(3.5, top), adapters(1), loop_filter(3)),
    ]
    seeds = []
    for name, image, quality, aset, lf in plans:
        data = codec.encode(image, quality, adapter_set=aset, loop_filter=lf).data
        seeds.append(Seed(name, data, np.asarray(codec.decode(data).image)))
    # Reduced resolution (spec §12): a 20×28 coded image upsampled to a 40×55 RGBA output.
    from udic import resample

    low = codec.encode(LoadedImage(_smooth(20, 28, 13), "RGB", None, None), min(2.0, top)).data
    data, _ = resample.as_output_file(low, 40, 55, np.tile(np.arange(55, dtype=np.uint8) * 4, (40, 1)))
    seeds.append(Seed("resample-40x55-q2", data, np.asarray(codec.decode(data).image)))
    seeds += pixel_seeds()
    return seeds


def _bands(h: int, w: int, jitter: int = 4) -> np.ndarray:
    """Diagonal colour bands (80 colours): with wandering edges the palette raster scan with the
    literal cache and fresh literals; with straight ones (jitter 1) a coded palette."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    k = xx + 2 * yy + rng.integers(0, jitter, (h, w))
    return np.stack([40 + k % 200, 60 + k // 2 % 150, 90 + k // 3 % 120], axis=-1).astype(np.uint8)


def _pasted(h: int, w: int) -> np.ndarray:
    """Noise in 24 colours with one 6×12 block pasted again three times: long matches pay."""
    rng = np.random.default_rng(8)
    idx = rng.integers(0, 24, (h, w))
    for y, x in ((10, 3), (14, 20), (h - 7, w - 13)):
        idx[y : y + 6, x : x + 12] = idx[1:7, 2:14]
    return rng.integers(0, 256, (24, 3), dtype=np.uint8)[idx]


def pixel_seeds() -> list[Seed]:
    """Pixel-coded files (spec §11): every coder mode of the pixels section."""
    from udic import api, pixelcodec
    from udic.metadata import Metadata

    flat = np.zeros((18, 26, 3), np.uint8)
    flat[4:12, 5:20] = (200, 40, 10)
    flat[9:, 15:] = (30, 30, 220)
    # Sizes: with fresh literals (payload v6) a small image whose every pixel is its own colour codes
    # smaller as a palette raster scan, so the predictive and interlaced seeds are a little larger.
    rgba = np.dstack([_smooth(40, 60, 3), np.tile(np.arange(60, dtype=np.uint8) * 4, (40, 1))])
    wide = (_smooth(12, 14, 14).astype(np.uint16) * 257 + 3)
    plans = [
        ("pixels-lossless-rgba", rgba, 8, 0, None),
        ("pixels-near-gray", _smooth(22, 17, 15)[..., :1], 8, 3, Metadata(xmp=b"<x/>")),  # literals above (v10)
        ("pixels-near-rgb", _smooth(30, 40, 3), 8, 2, None),  # predictive (small photos now take the raster scan)
        ("pixels-near-gray-rgb", np.repeat(_smooth(30, 40, 1)[..., 2:], 3, axis=2), 8, 2, None),  # the gray transform (v12)
        ("pixels-palette", flat, 8, 0, None),  # palette raster (lossless payload mode 3)
        # (8 colours: effort 1 codes the interlaced palette only up to 16 since session 35; with 22,
        # levels of 85, it did not try it, and at 36 x 52 pixels the raster scan came out smaller)
        ("pixels-palette-interlaced", (_smooth(48, 64, 3) // 128 * 128).astype(np.uint8), 8, 0, None),
        ("pixels-palette-cached", _bands(24, 32), 8, 0, None),  # literal cache, fresh literals
        # coded palette (a list; 16-bit samples: with payload v11's rates an 8-bit gray ramp's
        # palette codes smaller in context)
        ("pixels-palette-coded", _bands(24, 32, 1)[..., :1].astype(np.uint16) * 257, 16, 0, None),
        ("pixels-palette-in-context", _bands(24, 32, 1), 8, 0, None),  # palette coded in context (payload v10)
        ("pixels-palette-long", _pasted(26, 36), 8, 0, None),  # long matches (payload v9)
        ("pixels-16bit", wide, 16, 0, None),
        ("pixels-noise", np.random.default_rng(5).integers(0, 256, (9, 11, 3), dtype=np.uint8), 8, 0, None),
    ]
    seeds = []
    for name, samples, depth, max_error, meta in plans:
        data = pixelcodec.encode_file(samples, depth, max_error, 1, metadata=meta, note="fuzz seed").data
        seeds.append(Seed(name, data, np.asarray(api.decode(data, progress=False).image)))
    # A payload of version 10 (the adaptive models' older rates; the encoder writes the version
    # whose rates it codes with), so that the decoder's older-rates path is fuzzed too.
    from udic.lossless import adaptive

    with adaptive.using(adaptive.RATES_V3):
        data = pixelcodec.encode_file(_bands(24, 32), 8, 0, 1, note="fuzz seed").data
    seeds.append(Seed("pixels-version-10", data, np.asarray(api.decode(data, progress=False).image)))
    # A palette raster scan in bands (payload v13), small: the encoder bands only from 512 rows,
    # so the seed is made with a lower threshold (the decoder accepts any band count ≤ 16 and rows).
    from udic import lossless

    kept = lossless.BANDS_MIN_ROWS
    lossless.BANDS_MIN_ROWS = 12
    try:
        data = pixelcodec.encode_file(_bands(25, 32), 8, 0, 1, note="fuzz seed").data
    finally:
        lossless.BANDS_MIN_ROWS = kept
    seeds.append(Seed("pixels-palette-bands", data, np.asarray(api.decode(data, progress=False).image)))
    return seeds


# Header inflation (issue 15): a small valid file claiming a huge size, trailer resealed.
INFLATED_SIZES = ((7999, 7999), (20000, 20000), (65535, 1), (1, 65535), (1 << 20, 1 << 20), (40000, 30000))
INFLATION_SECONDS = 1.0
INFLATION_BYTES = 200 << 20


def inflated(data: bytes, width: int, height: int, tile: int | None = None) -> bytes:
    raw = RawFile.parse(data)
    raw.fields["width"], raw.fields["height"] = width, height
    if tile is not None:
        raw.fields["tile"] = tile
    return raw.to_bytes()


def check_inflation(data: bytes, decode: Callable[[bytes], object]) -> Outcome:
    """``check`` plus the budget for inflated headers: refused within INFLATION_SECONDS and
    INFLATION_BYTES of new peak memory (Python's and numpy's through tracemalloc, the
    process's through its peak RSS), else the outcome is a "bloat"."""
    import resource
    import tracemalloc

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        outcome = check(data, decode, (), timeout=max(DEFAULT_TIMEOUT, 10 * INFLATION_SECONDS))
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    grown = max(traced, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0)
    if outcome.kind == "error" and (outcome.seconds > INFLATION_SECONDS or grown > INFLATION_BYTES):
        return Outcome("bloat", f"refused after {outcome.seconds:.2f} s and {grown >> 20} MB: {outcome.detail}",
                       outcome.error_type, outcome.seconds, outcome.sealed)
    return outcome


def inflation_campaign(seeds: Sequence[Seed], decode: Callable[[bytes], object]) -> Report:
    """Every seed at every inflated size (and tile 16 where the file is tiled by the header)."""
    report = Report()
    t0 = time.perf_counter()
    index = 0
    for k, seed in enumerate(seeds):
        for width, height in INFLATED_SIZES:
            for tile in ((None,) if seed.name.startswith("pixels") else (None, 16)):
                case = Case(seed=k, structured=[("inflate", width, height, tile)])
                report.add(index, case, check_inflation(inflated(seed.data, width, height, tile), decode), seeds)
                index += 1
    report.seconds = time.perf_counter() - t0
    return report


# ---- mutations ----------------------------------------------------------------------------
#
# A case is (seed index, structured ops, raw ops).  Structured ops edit the parsed layout
# of the seed (header fields, section list and payloads); the result is written back with a
# *correct* CRC trailer.  Raw ops then edit bytes; ("reseal",) recomputes the trailer.
# Every integer argument is taken modulo whatever it indexes, so any op applies to any file.

Op = tuple

INTERESTING = (
    0, 1, 2, 3, 4, 7, 8, 15, 16, 63, 64, 65, 127, 128, 255, 256, 257, 1023, 1024, 4095, 4096,
    8191, 8192, 65535, 65536, 100000, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 1 << 26,
    (1 << 31) - 1, (1 << 32) - 1, (1 << 35) - 1,
)

U16_EXTREMES = (0, 1, 2, 46, 205, 246, 4096, 32768, 65535)


@dataclass
class RawFile:
    """A .udic file as editable parts; ``to_bytes`` writes them with a correct trailer."""

    fields: dict[str, object]
    sections: list[list]  # [tag, payload, declared length or None]
    count: int | None = None  # declared section count (None: the real one)

    @classmethod
    def parse(cls, data: bytes) -> "RawFile":
        cont = ctr.parse(data, max_pixels=1 << 40)
        h = cont.header
        fields: dict[str, object] = {
            "version": h.version, "width": h.width, "height": h.height, "colour": int(h.colour),
            "flags": int(h.flags), "model_id": bytes.fromhex(h.model_id), "rate": h.rate,
            "latent_crc": h.latent_crc, "tile": h.tile, "effort": h.effort,
        }
        return cls(fields, [[int(k), v, None] for k, v in sorted(cont.sections.items())])

    def to_bytes(self) -> bytes:
        out = bytearray(ctr.MAGIC)
        for name, kind in ctr.HEADER_FIELDS:
            value = self.fields[name]
            if kind == "u8":
                out += struct.pack("<B", int(value) & 0xFF)
            elif kind == "u16":
                out += struct.pack("<H", int(value) & 0xFFFF)
            elif kind == "u32":
                out += struct.pack("<I", int(value) & 0xFFFFFFFF)
            elif kind == "varint":
                out += ctr.write_varint(int(value))
            else:
                out += bytes(value)[:8].ljust(8, b"\0")  # type: ignore[arg-type]
        out += ctr.write_varint(len(self.sections) if self.count is None else self.count)
        for tag, payload, declared in self.sections:
            out.append(tag & 0xFF)
            out += ctr.write_varint(len(payload) if declared is None else max(0, declared))
            out += payload
        return seal(bytes(out))


def seal(body: bytes) -> bytes:
    """``body`` plus its CRC-32 trailer."""
    return body + struct.pack("<I", zlib.crc32(body))


def reseal(data: bytes) -> bytes:
    """Replace the last four bytes by the CRC-32 of the rest (as a damaged-but-resealed file)."""
    if len(data) < 4:
        return data
    return seal(data[:-4])


def _bytes_of(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _section_index(raw: RawFile, tag: int) -> int | None:
    for i, (t, _, _) in enumerate(raw.sections):
        if t == tag:
            return i
    return None


def _edit_adapters_header(payload: bytes, which: int, value: int) -> bytes:
    """Set count, first slot, first rank, step_q or scale_q of an adapters payload (§6)."""
    if not payload:
        return payload
    b = bytearray(payload)
    count = b[0]
    which %= 5
    if which == 0:
        b[0] = value & 0xFF
    elif which in (1, 2) and len(b) > which:
        b[which] = value & 0xFF
    elif which in (3, 4):
        k = 1 + 2 * count + 2 * (which - 3)
        if k + 2 <= len(b):
            b[k : k + 2] = struct.pack("<H", value & 0xFFFF)
    return bytes(b)


def _edit_alpha_table(payload: bytes, entry: int, value: int) -> bytes:
    """Rewrite one (symbol, count) entry — or, for entry 0, n_used — of an alpha payload (§7)."""
    reader = ctr._Reader(payload, len(payload))
    try:
        n_used = reader.varint("alpha")
        entries = [(reader.take(1, "alpha")[0], reader.varint("alpha")) for _ in range(min(n_used, 256))]
    except UdicError:
        return payload
    rest = payload[reader.pos :]
    if entry % (len(entries) + 1) == 0:
        n_used = value
    else:
        i = entry % (len(entries) + 1) - 1
        sym, count = entries[i]
        entries[i] = (sym, value) if entry % 2 else (value & 0xFF, count)
    out = bytearray(ctr.write_varint(n_used))
    for sym, count in entries:
        out.append(sym)
        out += ctr.write_varint(count)
    return bytes(out) + rest


def _apply_structured(raw: RawFile, op: Op, seeds: Sequence[Seed]) -> None:
    kind = op[0]
    secs = raw.sections
    if kind in ("adapters_hdr", "alpha_hdr", "icc_data"):
        tag = {"adapters_hdr": 3, "alpha_hdr": 4, "icc_data": 5}[kind]
        i = _section_index(raw, tag)
        if i is None:
            return
        if kind == "adapters_hdr" and len(op) == 4:  # ("adapters_hdr", "params", step_q, scale_q)
            secs[i][1] = _edit_adapters_header(_edit_adapters_header(secs[i][1], 3, op[2]), 4, op[3])
        elif kind == "adapters_hdr":
            secs[i][1] = _edit_adapters_header(secs[i][1], op[1], op[2])
        elif kind == "alpha_hdr":
            secs[i][1] = _edit_alpha_table(secs[i][1], op[1], op[2])
        else:  # a well-formed zlib stream of other content: the ICC is not in any checksum
            secs[i][1] = zlib.compress(_bytes_of(op[2], op[1] % 4096))
        return
    if kind == "field":
        _, index, value = op
        name = ctr.HEADER_FIELDS[index % len(ctr.HEADER_FIELDS)][0]
        raw.fields[name] = (value % (1 << 64)).to_bytes(8, "little") if name == "model_id" else value
        return
    if kind == "count":
        raw.count = op[1]
        return
    if kind == "inflate":
        _, width, height, tile = op
        raw.fields["width"], raw.fields["height"] = width, height
        if tile is not None:
            raw.fields["tile"] = tile
        return
    if kind == "sec_add":
        _, tag, n, s = op
        secs.append([tag, _bytes_of(s, n), None])
        return
    if not secs:
        return
    i = op[1] % len(secs)
    payload = secs[i][1]
    if kind == "sec_flip":
        _, _, pos, bit = op
        if payload:
            b = bytearray(payload)
            b[pos % len(b)] ^= 1 << (bit % 8)
            secs[i][1] = bytes(b)
    elif kind == "sec_set":
        _, _, pos, value = op
        if payload:
            b = bytearray(payload)
            b[pos % len(b)] = value & 0xFF
            secs[i][1] = bytes(b)
    elif kind == "sec_word":  # one u32 of an ANS word stream
        _, _, pos, word = op
        if len(payload) >= 4:
            k = 4 * (pos % (len(payload) // 4))
            secs[i][1] = payload[:k] + struct.pack("<I", word & 0xFFFFFFFF) + payload[k + 4 :]
    elif kind == "sec_trunc":
        secs[i][1] = payload[: op[2] % (len(payload) + 1)]
    elif kind == "sec_insert":
        _, _, pos, data = op
        k = pos % (len(payload) + 1)
        secs[i][1] = payload[:k] + data + payload[k:]
    elif kind == "sec_extend":
        secs[i][1] = payload + op[2]
    elif kind == "sec_random":
        _, _, n, s = op
        secs[i][1] = _bytes_of(s, n)
    elif kind == "sec_zero":
        secs[i][1] = bytes(len(payload))
    elif kind == "sec_from":  # the same section of another file (or its k-th section)
        _, _, other = op
        donor = RawFile.parse(seeds[other % len(seeds)].data).sections
        same = [p for t, p, _ in donor if t == secs[i][0]]
        secs[i][1] = same[0] if same else donor[other % len(donor)][1]
    elif kind == "sec_drop":
        del secs[i]
    elif kind == "sec_dup":
        secs.insert(i, list(secs[i]))
    elif kind == "sec_tag":
        secs[i][0] = op[2]
    elif kind == "sec_len":
        secs[i][2] = len(payload) + op[2]
    elif kind == "sec_swap":
        j = op[2] % len(secs)
        secs[i], secs[j] = secs[j], secs[i]
    else:
        raise ValueError(f"unknown structured op {kind!r}")


def _apply_raw(data: bytes, op: Op, seeds: Sequence[Seed]) -> bytes:
    kind = op[0]
    n = len(data)
    if kind == "reseal":
        return reseal(data)
    if kind == "append":
        return data + op[1]
    if kind == "trunc":
        return data[: op[1] % (n + 1)]
    if kind == "insert":
        k = op[1] % (n + 1)
        return data[:k] + op[2] + data[k:]
    if kind == "splice":  # head of this file, tail of another
        _, other, a, b = op
        donor = seeds[other % len(seeds)].data
        return data[: a % (n + 1)] + donor[b % (len(donor) + 1) :]
    if not data:
        return data
    k = op[1] % n
    if kind == "flip":
        return data[:k] + bytes([data[k] ^ (1 << (op[2] % 8))]) + data[k + 1 :]
    if kind == "set":
        return data[:k] + bytes([op[2] & 0xFF]) + data[k + 1 :]
    if kind == "delete":
        return data[:k] + data[k + 1 + op[2] % 16 :]
    raise ValueError(f"unknown raw op {kind!r}")


@dataclass
class Case:
    seed: int
    structured: list[Op] = field(default_factory=list)
    raw: list[Op] = field(default_factory=list)

    def build(self, seeds: Sequence[Seed]) -> bytes:
        data = seeds[self.seed % len(seeds)].data
        if self.structured:
            rf = RawFile.parse(data)
            for op in self.structured:
                _apply_structured(rf, op, seeds)
            data = rf.to_bytes()
        for op in self.raw:
            data = _apply_raw(data, op, seeds)
        return data

    def describe(self, seeds: Sequence[Seed]) -> str:
        def short(op: Op) -> str:
            return "(" + ", ".join(f"<{len(a)} bytes>" if isinstance(a, bytes) else repr(a) for a in op) + ")"

        parts = [f"seed {seeds[self.seed % len(seeds)].name}"]
        if self.structured:
            parts.append("structured+reseal " + " ".join(short(o) for o in self.structured))
        if self.raw:
            parts.append("raw " + " ".join(short(o) for o in self.raw))
        return "; ".join(parts)


def _interesting(rng: random.Random) -> int:
    if rng.random() < 0.7:
        return rng.choice(INTERESTING)
    return rng.randrange(1 << rng.choice((8, 16, 24, 32)))


def random_case(rng: random.Random, n_seeds: int) -> Case:
    """One case: mostly structured edits behind a valid trailer, else raw damage."""
    case = Case(seed=rng.randrange(n_seeds))
    big = lambda: rng.randrange(1 << 16)  # noqa: E731 - positions, taken modulo a length
    if rng.random() < 0.7:
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            kind = rng.choice((
                "field", "field", "count", "sec_add", "sec_flip", "sec_flip", "sec_flip", "sec_set",
                "sec_word", "sec_word", "sec_trunc", "sec_insert", "sec_extend", "sec_random", "sec_zero",
                "sec_from", "sec_from", "sec_drop", "sec_dup", "sec_tag", "sec_len", "sec_swap",
                "adapters_hdr", "adapters_hdr", "adapters_hdr", "adapters_hdr", "alpha_hdr", "alpha_hdr",
                "alpha_hdr", "icc_data", "inflate",
            ))
            if kind == "inflate":
                op = ("inflate", *rng.choice(INFLATED_SIZES), rng.choice((None, 0, 16, 255)))
            elif kind == "field":
                op: Op = ("field", rng.randrange(8), _interesting(rng))
            elif kind == "count":
                op = ("count", rng.choice((0, 1, 2, 3, 4, 5, 6, 127, 128, 1 << 20)))
            elif kind == "sec_add":
                op = ("sec_add", rng.randrange(8), rng.choice((0, 1, 4, 8, 64)), rng.randrange(1 << 30))
            elif kind in ("sec_flip", "sec_set", "sec_word"):
                op = (kind, rng.randrange(8), big(), rng.randrange(1 << 32) if kind == "sec_word" else rng.randrange(256))
            elif kind in ("sec_trunc",):
                op = (kind, rng.randrange(8), big())
            elif kind == "sec_insert":
                op = (kind, rng.randrange(8), big(), rng.randbytes(rng.choice((1, 3, 4, 8))))
            elif kind == "sec_extend":
                op = (kind, rng.randrange(8), rng.randbytes(rng.choice((1, 4, 8, 100))))
            elif kind == "sec_random":
                op = (kind, rng.randrange(8), rng.choice((0, 1, 4, 8, 16, 64, 256)), rng.randrange(1 << 30))
            elif kind == "sec_from":
                op = (kind, rng.randrange(8), rng.randrange(64))
            elif kind == "sec_tag":
                op = (kind, rng.randrange(8), rng.randrange(256))
            elif kind == "sec_len":
                op = (kind, rng.randrange(8), rng.choice((-8, -4, -1, 1, 4, 8, 1 << 20, 1 << 34)))
            elif kind == "sec_swap":
                op = (kind, rng.randrange(8), rng.randrange(8))
            elif kind == "adapters_hdr" and rng.random() < 0.5:  # step and scale together
                op = (kind, "params", rng.choice(U16_EXTREMES), rng.choice(U16_EXTREMES))
            elif kind in ("adapters_hdr", "alpha_hdr"):
                op = (kind, rng.randrange(8), _interesting(rng))
            elif kind == "icc_data":
                op = (kind, rng.randrange(4096), rng.randrange(1 << 30))
            else:
                op = (kind, rng.randrange(8))
            case.structured.append(op)
    if not case.structured or rng.random() < 0.4:
        for _ in range(rng.choice((1, 1, 2, 3))):
            kind = rng.choice(("flip", "flip", "set", "trunc", "insert", "delete", "append", "splice"))
            if kind == "flip":
                op = ("flip", rng.randrange(1 << 16), rng.randrange(8))
            elif kind == "set":
                op = ("set", rng.randrange(1 << 16), rng.randrange(256))
            elif kind == "trunc":
                op = ("trunc", rng.randrange(1 << 16))
            elif kind == "insert":
                op = ("insert", rng.randrange(1 << 16), rng.randbytes(rng.choice((1, 4, 16))))
            elif kind == "delete":
                op = ("delete", rng.randrange(1 << 16), rng.randrange(16))
            elif kind == "append":
                op = ("append", rng.randbytes(rng.choice((1, 4, 100))))
            else:
                op = ("splice", rng.randrange(64), rng.randrange(1 << 16), rng.randrange(1 << 16))
            case.raw.append(op)
        if rng.random() < 0.6:
            case.raw.append(("reseal",))
    return case


# ---- the oracle --------------------------------------------------------------------------


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so no ``except Exception`` can swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread, POSIX); otherwise no limit."""
    usable = (
        seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(signum, frame):  # noqa: ARG001
        raise CaseTimeout(f"no result after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


BAD_KINDS = ("crash", "hang", "wrong-size", "mismatch", "bloat")


@dataclass
class Outcome:
    """``kind``: error (clean UdicError), exact (pixels of a valid seed), decoded (another valid
    image: only sections outside the latent checksum were changed), or one of BAD_KINDS."""

    kind: str
    detail: str = ""
    error_type: str = ""
    seconds: float = 0.0
    sealed: bool = False  # the trailer CRC matched, so the parser went further
    trace: str = ""

    @property
    def bad(self) -> bool:
        return self.kind in BAD_KINDS


def is_sealed(data: bytes) -> bool:
    return len(data) >= 9 and data[:4] == ctr.MAGIC and zlib.crc32(data[:-4]) == struct.unpack("<I", data[-4:])[0]


def check(
    data: bytes,
    decode: Callable[[bytes], object],
    seeds: Sequence[Seed],
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Outcome:
    """Decode ``data`` and classify what happened.  Never raises (except KeyboardInterrupt)."""
    sealed = is_sealed(data)
    t0 = time.perf_counter()
    try:
        with time_limit(timeout):
            result = decode(data)
    except UdicError as exc:
        dt = time.perf_counter() - t0
        if timeout and dt > timeout:
            return Outcome("hang", f"took {dt:.1f} s, then: {exc}", type(exc).__name__, dt, sealed)
        return Outcome("error", str(exc), type(exc).__name__, dt, sealed)
    except CaseTimeout as exc:
        return Outcome("hang", str(exc), "", time.perf_counter() - t0, sealed, traceback.format_exc())
    except Exception as exc:  # anything but UdicError is a bug
        return Outcome("crash", f"{type(exc).__name__}: {exc}", type(exc).__name__, time.perf_counter() - t0,
                       sealed, traceback.format_exc())
    dt = time.perf_counter() - t0
    if timeout and dt > timeout:
        return Outcome("hang", f"decoded, but took {dt:.1f} s", "", dt, sealed)
    header = ctr.parse(data, max_pixels=1 << 40).header
    image = result.image  # type: ignore[attr-defined]
    if image.size != (header.width, header.height):
        return Outcome("wrong-size", f"{image.size} for a {header.width}x{header.height} header", "", dt, sealed)
    pixels = np.asarray(image)
    for seed in seeds:
        if seed.data == data:
            if pixels.shape != seed.pixels.shape or not np.array_equal(pixels, seed.pixels):
                return Outcome("mismatch", f"unmodified {seed.name} decodes differently", "", dt, sealed)
            return Outcome("exact", seed.name, "", dt, sealed)
    for seed in seeds:
        if pixels.shape == seed.pixels.shape and np.array_equal(pixels, seed.pixels):
            return Outcome("exact", seed.name, "", dt, sealed)
    return Outcome("decoded", f"{header.width}x{header.height}", "", dt, sealed)


def error_family(message: str) -> str:
    """Group error messages: numbers and parenthesised details removed."""
    text = re.sub(r"\(.*?\)", "", message)
    text = re.sub(r"[0-9a-f]{16}", "<id>", text)
    text = re.sub(r"\d+(\.\d+)?(x\d+)?", "#", text)
    return " ".join(text.split())[:80].rstrip()


# ---- the campaign ---------------------------------------------------------------------------


@dataclass
class Report:
    cases: int = 0
    seconds: float = 0.0
    kinds: Counter = field(default_factory=Counter)
    sealed: int = 0
    errors: Counter = field(default_factory=Counter)
    failures: list[dict] = field(default_factory=list)
    slowest: float = 0.0

    def add(self, index: int, case: Case, outcome: Outcome, seeds: Sequence[Seed]) -> None:
        self.cases += 1
        self.kinds[outcome.kind] += 1
        self.sealed += outcome.sealed
        self.slowest = max(self.slowest, outcome.seconds)
        if outcome.kind == "error":
            self.errors[f"{outcome.error_type}: {error_family(outcome.detail)}"] += 1
        if outcome.bad:
            self.failures.append({
                "case": index, "kind": outcome.kind, "detail": outcome.detail,
                "mutations": case.describe(seeds), "trace": outcome.trace.strip().splitlines()[-3:],
            })

    @property
    def bad(self) -> int:
        return sum(self.kinds[k] for k in BAD_KINDS)

    def to_dict(self) -> dict:
        return {
            "cases": self.cases, "seconds": round(self.seconds, 2), "outcomes": dict(self.kinds),
            "past_crc": self.sealed, "slowest_case_s": round(self.slowest, 3), "bad": self.bad,
            "errors": dict(self.errors.most_common()), "failures": self.failures,
        }

    def lines(self, seed: int, timeout: float) -> list[str]:
        k = self.kinds
        out = [
            f"udic fuzz: {self.cases} cases, seed {seed}, {self.seconds:.1f} s "
            f"(slowest case {self.slowest:.2f} s)",
            f"  clean errors        {k['error']:7d}",
            f"  exact decodes       {k['exact']:7d}",
            f"  other valid decodes {k['decoded']:7d}   (resealed edits outside the latent checksum)",
            f"  crashes             {k['crash']:7d}",
            f"  hangs (> {timeout:g} s)     {k['hang']:7d}",
            f"  wrong size          {k['wrong-size'] + k['mismatch']:7d}",
            f"  past the CRC check  {self.sealed:7d}",
            "  most common errors:",
        ]
        out += [f"    {n:6d}  {msg}" for msg, n in self.errors.most_common(12)]
        for f in self.failures[:20]:
            out.append(f"  FAIL case {f['case']}: {f['kind']}: {f['detail'][:200]}")
            out.append(f"       {f['mutations'][:300]}")
        out.append("udic fuzz: " + ("OK" if not self.bad else f"{self.bad} bad cases"))
        return out


def api_decoder(model: str | None = None) -> Callable[[bytes], object]:
    """Decode through the public API (model found by the header's id unless given)."""
    from udic import api

    return lambda data: api.decode(data, progress=False, model=model)


def campaign(
    cases: int,
    seeds: Sequence[Seed],
    decode: Callable[[bytes], object],
    seed: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
    only: int | None = None,
    on_progress: Callable[[int, Report], None] | None = None,
) -> Report:
    """Run ``cases`` random cases (case i uses Random(f"{seed}:{i}"), so any one can be replayed)."""
    report = Report()
    t0 = time.perf_counter()
    indices = [only] if only is not None else range(cases)
    for i in indices:
        case = random_case(random.Random(f"{seed}:{i}"), len(seeds))
        outcome = check(case.build(seeds), decode, seeds, timeout)
        report.add(i, case, outcome, seeds)
        if only is not None:
            print(case.describe(seeds))
            print(f"-> {outcome.kind}: {outcome.detail}")
            if outcome.trace:
                print(outcome.trace)
        if on_progress is not None:
            on_progress(i + 1, report)
    report.seconds = time.perf_counter() - t0
    return report


# ---- batch throughput (for the benchmark) ----------------------------------------------------


def _cli(args: Sequence[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "udic.cli", *args], capture_output=True, env=env, timeout=24 * 3600)
    return time.perf_counter() - t0, proc


def batch_throughput(
    images: Sequence[Path],
    jobs: Sequence[int] = (1, 2),
    model: str | None = None,
    quality: float = 3.0,
    effort: int | None = None,
    threads: int | None = None,
    env: dict[str, str] | None = None,
    workdir: Path | None = None,
) -> list[dict]:
    """Images per minute of ``udic encode`` and ``udic decode`` batches at each ``--jobs``.

    Each run is a fresh ``udic`` process (as a user would run it); ``startup_s`` is a
    one-image run's wall time, and ``steady_per_min`` excludes it:
    ``(n − 1) / (wall − startup) · 60``.  ``threads`` defaults to the CPU count.
    """
    env = dict(os.environ if env is None else env)
    threads = threads or os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        base = Path(tmp)
        for n_jobs in jobs:
            common = ["--quiet", "--force", "--threads", str(threads), "--jobs", str(n_jobs)]
            if model is not None:
                common += ["--model", model]
            enc_extra = ["-q", str(quality)] + ([] if effort is None else ["--effort", str(effort)])
            coded, decoded = base / f"enc-j{n_jobs}", base / f"dec-j{n_jobs}"
            for command, inputs, out, extra in (
                ("encode", [str(p) for p in images], coded, enc_extra),
                ("decode", None, decoded, []),
            ):
                if inputs is None:
                    inputs = sorted(str(p) for p in coded.glob("*.udic"))
                one_out = base / f"one-{command}-j{n_jobs}"
                start_s, proc1 = _cli([command, inputs[0], "-o", str(one_out) + "/", *common, *extra], env)
                wall, proc = _cli([command, *inputs, "-o", str(out), *common, *extra], env)
                ok = proc.returncode == 0 and proc1.returncode == 0
                n = len(inputs)
                steady = (n - 1) / (wall - start_s) * 60 if n > 1 and wall > start_s else float("nan")
                rows.append({
                    "command": command, "jobs": n_jobs, "threads": threads, "images": n,
                    "wall_s": round(wall, 3), "startup_s": round(start_s, 3),
                    "per_min": round(n / wall * 60, 2), "steady_per_min": round(steady, 2),
                    "ok": ok, "stderr": "" if ok else (proc.stderr or proc1.stderr).decode(errors="replace")[-500:],
                })
    return rows


def synthetic_images(directory: Path, count: int, size: int) -> list[Path]:
    """``count`` smooth noisy PNGs of ``size``×``size`` (different content each)."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"img{i:03d}.png"
        Image.fromarray(_smooth(size, size, 100 + i)).save(path)
        paths.append(path)
    return paths


# ---- command line ----------------------------------------------------------------------------


def _prepare_model(model: str | None, cache: Path) -> str:
    """Put the campaign's model into ``cache`` (a fresh tiny one unless a path is given)."""
    from udic import hub

    if model is None:
        return export_tiny_model(cache)[1]
    path = Path(model)
    if not path.is_file():
        raise SystemExit(f"udic fuzz: --model must be a .safetensors file, got {model!r}")
    model_id = hub.model_id_for_file(path)
    shutil.copyfile(path, cache / f"fuzz-{model_id}.safetensors")
    return model_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="number of fuzz cases (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    parser.add_argument("--case", type=int, default=None, help="replay one case of the campaign, verbosely")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per case (default 10)")
    parser.add_argument("--model", default=None,
                        help="fuzzing: a weights file (default: a fresh tiny model); throughput: 'tiny', or a "
                             "model id, name or path (default: udic's default model)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", default=None, help="also write the report as JSON to this file")
    parser.add_argument("--batch-throughput", action="store_true",
                        help="instead: images per minute of udic encode/decode batches at --jobs 1 and 2")
    parser.add_argument("--images", type=int, default=24, help="throughput: synthetic images (default 24)")
    parser.add_argument("--size", type=int, default=256, help="throughput: their side in pixels (default 256)")
    parser.add_argument("--image-dir", default=None, help="throughput: use these PNG/JPEG files instead")
    parser.add_argument("--jobs", default="1,2", help="throughput: --jobs values (default 1,2)")
    parser.add_argument("--effort", type=int, default=None, help="throughput: udic encode --effort")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    with tempfile.TemporaryDirectory(prefix="udic-fuzz-") as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        if args.batch_throughput:
            if args.model != "tiny":  # the user's own setup and model
                return _throughput_main(args, args.model, Path(tmp))
            model_id = _prepare_model(None, cache)
            with isolated_model_env(cache):
                return _throughput_main(args, model_id, Path(tmp))
        model_id = _prepare_model(args.model, cache)
        with isolated_model_env(cache):
            from udic import api

            codec = api.get_codec(model_id, progress=False)
            seeds = make_seeds(codec)
            decode = api_decoder()

            def progress(done: int, report: Report) -> None:
                if done % 1000 == 0 and args.case is None:
                    print(f"udic fuzz: {done}/{args.cases} cases, {report.bad} bad", file=sys.stderr, flush=True)

            inflation = inflation_campaign(seeds, decode) if args.case is None else Report()
            report = campaign(args.cases, seeds, decode, args.seed, args.timeout, args.case, progress)
    if inflation.cases:
        print(f"udic fuzz: {inflation.cases} inflated headers (up to {INFLATED_SIZES[-2][0]}² pixels claimed), "
              f"slowest refusal {inflation.slowest:.3f} s, {inflation.bad} over the {INFLATION_SECONDS:g} s / "
              f"{INFLATION_BYTES >> 20} MB budget")
        for f in inflation.failures[:10]:
            print(f"  FAIL {f['kind']}: {f['detail'][:200]}  ({f['mutations'][:200]})")
    print("\n".join(report.lines(args.seed, args.timeout)))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    return 1 if report.bad or inflation.bad else 0


def _throughput_main(args: argparse.Namespace, model: str | None, tmp: Path) -> int:
    if args.image_dir:
        images = sorted(p for p in Path(args.image_dir).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    else:
        images = synthetic_images(tmp / "images", args.images, args.size)
    if not images:
        print("udic fuzz: no images", file=sys.stderr)
        return 2
    rows = batch_throughput(images, [int(j) for j in args.jobs.split(",")], model=model,
                            effort=args.effort, env=dict(os.environ), workdir=tmp)
    for r in rows:
        status = "" if r["ok"] else f"  FAILED: {r['stderr'].strip().splitlines()[-1:]}"
        print(f"udic {r['command']} --jobs {r['jobs']}: {r['images']} images in {r['wall_s']:.1f} s "
              f"= {r['per_min']:.1f}/min ({r['steady_per_min']:.1f}/min without the "
              f"{r['startup_s']:.1f} s one-image run){status}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
