"""Crafted pixel payloads that are valid or nearly so, but chosen to hurt the decoder: a stream
of new copy offsets (cheap to code once the models adapt), a colour number past a one-colour
table, and what a decode leaves behind in its thread."""

from __future__ import annotations

import numpy as np
import pytest

from udic import lossless
from udic.errors import ContainerError
from udic.lossless import adaptive, predict, raster
from udic.lossless.adaptive import AdaptiveModel
from udic.lossless.coding import OpList
from udic.lossless.payload import Writer


class _Chooser:
    """A stand-in ANS decoder for ``raster.decode_raster`` that answers: row 0 a literal (colour
    0), every later pixel a *new* copy offset, and each new offset (dy = 1, dx = 0)."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width, self.stage = height, width, 0

    def _answer(self, alphabet: int, count: int) -> np.ndarray:
        if alphabet == 9:  # the row symbols: literal (8) in row 0, then new (7)
            return np.full(count, 8 if self.stage == 0 else 7)
        if alphabet == 2:  # a fresh literal's bit: the row's first literal is fresh
            self.stage = max(self.stage, 1)
            return np.zeros(count, np.int64)
        if alphabet == raster.token_count(2 * self.width):  # dx token: 0
            return np.zeros(count, np.int64)
        raise AssertionError(alphabet)

    def per_symbol(self, rows: np.ndarray) -> np.ndarray:
        return self._answer(rows.shape[1], rows.shape[0])

    def rows(self, probs: np.ndarray, counts: np.ndarray, runs: np.ndarray) -> np.ndarray:
        return self._answer(probs.shape[1], int(np.sum(counts)))

    def single(self, probs: np.ndarray, count: int) -> np.ndarray:
        if probs.size == raster.token_count(self.height - 1):  # dy token: 1
            self.stage = 2
            return np.ones(count, np.int64)
        return self._answer(probs.size, count)

    def raw(self, nraw: np.ndarray) -> None:
        assert not nraw.any()


def _all_new_offsets_payload(height: int, width: int) -> bytes:
    """A real version-13 raster payload (one colour, lz = carry, no listed offsets) in which every
    pixel below row 0 brings a new copy offset: the symbols ``_Chooser`` picks, recorded per model
    call and coded again with fresh models into one stream."""
    calls, made = [], []
    decode, init = AdaptiveModel.decode, raster._Models.__init__

    def recording_decode(self, dec, group, ctx):  # noqa: ANN001, ANN202
        out = decode(self, dec, group, ctx)
        calls.append((self, group, np.array(ctx), out))
        return out

    def recording_init(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        init(self, *args, **kwargs)
        made.append((self, args, kwargs))

    AdaptiveModel.decode, raster._Models.__init__ = recording_decode, recording_init
    try:
        with adaptive.using(adaptive.RATES_V11):
            raster.decode_raster(_Chooser(height, width), height, width, 1, [], raster.LZ_CARRY)
            old, args, kwargs = made[0]
            raster._Models.__init__ = init
            new = raster._Models(*args, **kwargs)
            pairs = {id(getattr(old, n)): getattr(new, n) for n in ("literal", "fresh", "rank", "dy", "dx")}
            pairs.update({id(a): b for a, b in zip(old.phases, new.phases)})
            ops = OpList()
            for model, group, ctx, sym in calls:
                pairs[id(model)].encode(ops, group, ctx, sym)
            stream = ops.finish()
    finally:
        AdaptiveModel.decode, raster._Models.__init__ = decode, init
    out = Writer()
    out.u8(13); out.u8(3); out.varint(width); out.varint(height); out.u8(1); out.u8(8); out.u8(0); out.varint(0)  # noqa: E702
    out.u8(1); out.varint(1); out.u8(0); out.u8(9)  # noqa: E702 - one band; a palette of one raw colour, 9
    out.u8(0); out.u8(raster.LZ_CARRY); out.u8(0); out.u8(0); out.varint(0)  # noqa: E702
    out.varint(len(stream) // 4)
    out.raw(stream)
    return out.getvalue()


def test_a_stream_of_new_copy_offsets_decodes_into_a_growing_table():
    """Every pixel below row 0 names a new offset: 3,184 of them in a payload of a few dozen
    bytes.  The table grows by doubling (a copy per row made such streams quadratic in the
    image's size), and every copy still reads the right pixel."""
    payload = _all_new_offsets_payload(200, 16)
    assert len(payload) < 200
    decoded = lossless.decode(payload)
    assert decoded.shape[:2] == (200, 16) and np.all(decoded == 9)


# Version 2, predictive, 1 × 1 gray, matching on with a one-colour table (Q = 1) whose coding is
# padded to two entries; the pixel names colour number 1 (spec §5.3: a number ≥ Q is an error).
V2_COLOUR_PAST_TABLE = bytes.fromhex(
    "020101010108000001000100010101010b0101010101010101010101010101010001f9ffff0a")


def test_a_version_2_colour_number_past_the_table_is_refused():
    with pytest.raises(ContainerError, match="colour number out of range"):
        lossless.decode(V2_COLOUR_PAST_TABLE)


def test_a_decode_leaves_no_neighbour_arrays_in_its_thread():
    """The pixel-matching caches hold ~50 bytes a pixel; a batch worker must not keep the last
    image's after its decode returns."""
    rng = np.random.default_rng(0)
    img = np.repeat(np.repeat(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8), 6, 0), 6, 1)
    img = (img.astype(np.int32) + rng.integers(0, 2, img.shape)).astype(np.uint8)
    payload = lossless._encode_predictive(img, 8, 0, 1, 0, True, [])
    for cache in (predict._DISTINCT_CACHE, predict._KEYS_CACHE):
        assert getattr(cache, "last", None) is None
    assert np.array_equal(lossless.decode(payload), img)
    for cache in (predict._DISTINCT_CACHE, predict._KEYS_CACHE):
        assert getattr(cache, "last", None) is None
