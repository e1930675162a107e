"""udic.alpha: lossless alpha planes (bitstream_spec.md §7)."""

from __future__ import annotations

import constriction
import numpy as np
import pytest

from udic.alpha import decode_alpha, encode_alpha
from udic.container import write_varint
from udic.errors import ContainerError


def round_trip(a: np.ndarray) -> np.ndarray:
    out = decode_alpha(encode_alpha(a), *a.shape)
    assert out.dtype == np.uint8 and out.shape == a.shape
    return out


def mask_with_edges(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.where((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(h, w) / 3) ** 2, 255, 0)
    edge = rng.random((h, w)) < 0.05
    a[edge] = rng.integers(0, 256, int(edge.sum()))
    return a.astype(np.uint8)


@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (37, 1), (2, 2), (13, 17), (64, 3), (3, 64), (40, 56)])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_planes(shape: tuple[int, int], seed: int) -> None:
    a = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(round_trip(a), a)


@pytest.mark.parametrize("shape", [(1, 1), (1, 50), (50, 1), (40, 56), (33, 7)])
def test_masks(shape: tuple[int, int]) -> None:
    a = mask_with_edges(*shape)
    np.testing.assert_array_equal(round_trip(a), a)


@pytest.mark.parametrize("value", [0, 1, 128, 254, 255])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (20, 30)])
def test_flat_planes(value: int, shape: tuple[int, int]) -> None:
    a = np.full(shape, value, dtype=np.uint8)
    np.testing.assert_array_equal(round_trip(a), a)


def test_single_symbol_plane_has_no_coded_words() -> None:
    """All-zero residuals: table {0: h·w} and nothing else (§7, one symbol needs no data)."""
    a = np.zeros((20, 30), dtype=np.uint8)
    assert encode_alpha(a) == b"\x01" + b"\x00" + write_varint(600)
    one = np.array([[77]], dtype=np.uint8)
    assert encode_alpha(one) == b"\x01\x4d\x01"


def test_flat_nonzero_plane_is_two_symbols() -> None:
    """First residual is the value (predicted from 0), every other one is 0."""
    a = np.full((4, 5), 200, dtype=np.uint8)
    payload = encode_alpha(a)
    assert payload[:5] == b"\x02\x00\x13\xc8\x01"  # 2 used: 0 ×19, 200 ×1
    assert len(payload[5:]) % 4 == 0 and len(payload) > 5


def test_hand_computed_residuals() -> None:
    """[[10, 10], [12, 12]]: residuals 10 (from 0), 0, 2 (row start from a[0,0]), 0."""
    a = np.array([[10, 10], [12, 12]], dtype=np.uint8)
    payload = encode_alpha(a)
    table = b"\x03" + b"\x00\x02" + b"\x02\x01" + b"\x0a\x01"
    assert payload.startswith(table)
    words = np.frombuffer(payload[len(table) :], "<u4").astype(np.uint32)
    counts = np.zeros(256)
    counts[[0, 2, 10]] = [2, 1, 1]
    coder = constriction.stream.stack.AnsCoder(words)
    model = constriction.stream.model.Categorical(counts, perfect=False)
    assert list(coder.decode(model, 4)) == [10, 0, 2, 0]


def test_row_start_predicts_from_pixel_above_not_previous_row_end() -> None:
    """a[i, −1] = a[i−1, 0]: each row start's residual is against the row above's first pixel."""
    a = np.array([[5, 250], [5, 251]], dtype=np.uint8)
    payload = encode_alpha(a)
    # residuals: 5, 245, 0 (5 − 5, not 5 − 250), 246
    assert payload[:9] == b"\x04\x00\x01\x05\x01\xf5\x01\xf6\x01"
    np.testing.assert_array_equal(decode_alpha(payload, 2, 2), a)


def test_wraparound_residuals() -> None:
    a = np.array([[255, 0, 255, 0, 1, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(round_trip(a), a)


def test_mostly_flat_mask_is_small() -> None:
    a = np.zeros((100, 100), dtype=np.uint8)
    a[30:70, 30:70] = 255
    assert len(encode_alpha(a)) < 160  # 10 000 pixels in ~0.1 bit each (raw: 10 000 bytes)


def test_encoder_input_validation() -> None:
    with pytest.raises(ValueError):
        encode_alpha(np.zeros((3, 3), dtype=np.int32))
    with pytest.raises(ValueError):
        encode_alpha(np.zeros((3, 3, 1), dtype=np.uint8))


# ---- corrupt payloads ---------------------------------------------------------------------


def test_wrong_dimensions_refused() -> None:
    a = mask_with_edges(10, 12)
    payload = encode_alpha(a)
    for h, w in [(12, 10 - 1), (10, 13), (1, 1)]:
        with pytest.raises(ContainerError):
            decode_alpha(payload, h, w)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00",  # no symbols used
        b"\x80\x02",  # n_used = 256 but no table
        b"\x02\x00",  # table cut short
        b"\x02\x00\x05\x07",  # second entry missing its count
        b"\xff\xff\xff\xff\xff\x01",  # invalid varint
        b"\x01\x00\x07",  # counts sum to 7, not 20
        b"\x01\x00\x14\x00\x00\x00\x00",  # single symbol followed by stray data
        b"\x02\x00\x13\x05\x01",  # two symbols but no coded words
        b"\x02\x00\x13\x05\x01\x01\x02\x03",  # words not a multiple of 4 bytes
        b"\x02\x00\x13\x05\x01\x01\x00\x00\x00\x00\x00\x00\x00",  # last word zero
        b"\x81\x02" + b"\x00\x01" * 257,  # n_used 257
    ],
)
def test_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(ContainerError):
        decode_alpha(payload, 4, 5)


def test_every_truncation_refused() -> None:
    a = mask_with_edges(16, 16, seed=3)
    payload = encode_alpha(a)
    for cut in range(len(payload)):
        with pytest.raises(ContainerError):
            decode_alpha(payload[:cut], 16, 16)


def _table_length(payload: bytes) -> int:
    from udic.container import _Reader

    reader = _Reader(payload, len(payload))
    for _ in range(reader.varint("n")):
        reader.take(1, "symbol")
        reader.varint("count")
    return reader.pos


def test_corrupted_words_refused() -> None:
    """A damaged coded word must not silently yield a different plane.

    (Relabelling a table symbol cannot be detected inside the section — the file's CRC
    trailer covers that — so the flips here hit the coded words only.)
    """
    a = mask_with_edges(20, 30, seed=4)
    payload = encode_alpha(a)
    start = _table_length(payload)
    assert len(payload) - start >= 8
    rng = np.random.default_rng(9)
    refused = 0
    for _ in range(300):
        bad = bytearray(payload)
        pos = int(rng.integers(start, len(bad)))
        bad[pos] ^= int(rng.integers(1, 256))
        try:
            out = decode_alpha(bytes(bad), 20, 30)
        except ContainerError:
            refused += 1
            continue
        np.testing.assert_array_equal(out, a)  # a flip that still decodes must be harmless
    assert refused >= 290


def test_corrupted_table_never_raises_other_errors() -> None:
    a = mask_with_edges(20, 30, seed=5)
    payload = encode_alpha(a)
    for pos in range(_table_length(payload)):
        for xor in (0x01, 0x40, 0xFF):
            bad = bytearray(payload)
            bad[pos] ^= xor
            try:
                out = decode_alpha(bytes(bad), 20, 30)
            except ContainerError:
                continue
            assert out.shape == (20, 30) and out.dtype == np.uint8


def test_words_left_over_are_refused() -> None:
    """Spec §9: every coded group is consumed whole; a word under the bottom of the ANS stack
    (decoding pops from the end) is never read, and is refused rather than ignored."""
    a = np.zeros((8, 10), dtype=np.uint8)
    a[2:5, 3:7] = 255
    payload = encode_alpha(a)
    pos = 1  # the table: n_used, then per symbol a byte and a varint count
    for _ in range(payload[0]):
        pos += 1
        while payload[pos] & 0x80:
            pos += 1
        pos += 1
    assert (len(payload) - pos) % 4 == 0 and len(payload) > pos  # the words
    np.testing.assert_array_equal(decode_alpha(payload, 8, 10), a)
    with pytest.raises(ContainerError, match="left over"):
        decode_alpha(payload[:pos] + b"\x01\x00\x00\x00" + payload[pos:], 8, 10)


def test_the_symbol_table_is_increasing_and_every_count_used() -> None:
    """Spec §7: a decoder that let a repeated symbol's last count win (or took a zero count)
    could disagree with another about the same bytes; such tables make the file invalid."""
    alpha = np.array([[0, 0, 5, 5]], dtype=np.uint8)  # residuals 0, 0, 5, 0: symbols 0 (3) and 5 (1)
    good = encode_alpha(alpha)
    assert np.array_equal(decode_alpha(good, 1, 4), alpha)
    words = good[1 + 2 * 2:]  # n_used, then (symbol, count) twice: one byte each here
    # Each of these sums to the pixel count under "the last count wins", so only the order rule
    # refuses them: unordered, a symbol repeated, a zero count.
    for table in ([(5, 1), (0, 3)], [(0, 1), (0, 3), (5, 1)], [(0, 3), (5, 1), (7, 0)]):
        payload = write_varint(len(table)) + b"".join(bytes([s]) + write_varint(c) for s, c in table) + words
        with pytest.raises(ContainerError, match="out of order"):
            decode_alpha(payload, 1, 4)
