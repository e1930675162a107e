"""udic.entropy: indexed categorical coding with escapes (bitstream_spec.md §5)."""

from __future__ import annotations

import math

import constriction
import numpy as np
import pytest

from udic.entropy import (
    ESCAPE_MASS,
    IndexedCoder,
    Table,
    gaussian_tables,
    logistic_table,
    tables_from_matrix,
)
from udic.errors import ContainerError
from udic.models import scale_table


@pytest.fixture(scope="module")
def gauss_coder() -> IndexedCoder:
    return IndexedCoder(gaussian_tables(tuple(scale_table())))


def _gaussian_sample(rng: np.random.Generator, n: int, n_tables: int = 64) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.integers(0, n_tables, n)
    sigma = scale_table()[idx]
    return np.rint(rng.normal(0.0, sigma)).astype(np.int64), idx


def small_table_coder() -> IndexedCoder:
    # Table 0 covers [-2, 2], table 1 covers [10, 12], table 2 a single symbol {0}.
    return IndexedCoder(
        [
            Table(-2, np.array([0.1, 0.2, 0.4, 0.2, 0.1, 1e-3])),
            Table(10, np.array([0.5, 0.25, 0.25, 1e-3])),
            Table(0, np.array([1.0, 1e-3])),
        ]
    )


# ---- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_round_trip_many_tables(gauss_coder: IndexedCoder, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values, idx = _gaussian_sample(rng, int(rng.integers(1, 3000)))
    data = gauss_coder.encode(values, idx)
    assert len(data) % 4 == 0
    out = gauss_coder.decode(data, idx)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, values)


def test_round_trip_preserves_shape_independent_positions(gauss_coder: IndexedCoder) -> None:
    """Decoding puts every value back at its flat position, whatever the table order."""
    rng = np.random.default_rng(7)
    idx = rng.permutation(np.repeat(np.arange(64), 5)).reshape(4, 8, 10)
    values = rng.integers(-3, 4, size=idx.shape)
    out = gauss_coder.decode(gauss_coder.encode(values, idx), idx)
    np.testing.assert_array_equal(out, values.ravel())


def test_decode_with_other_indexes_differs(gauss_coder: IndexedCoder) -> None:
    """The indexes drive the probabilities: decoding with others must not give the data back."""
    rng = np.random.default_rng(8)
    values, idx = _gaussian_sample(rng, 500)
    values = values + 3  # make the data non-trivial even for the small-σ tables
    data = gauss_coder.encode(values, idx)
    try:
        out = gauss_coder.decode(data, (idx + 32) % 64)
    except ContainerError:
        return
    assert not np.array_equal(out, values)


def test_empty_input(gauss_coder: IndexedCoder) -> None:
    empty = np.zeros(0, dtype=np.int64)
    data = gauss_coder.encode(empty, empty)
    assert data == b""
    out = gauss_coder.decode(data, empty)
    assert out.shape == (0,)


def test_values_and_indexes_must_match(gauss_coder: IndexedCoder) -> None:
    with pytest.raises(ValueError):
        gauss_coder.encode(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        gauss_coder.encode(np.zeros(3), np.array([0, 1, 64]))
    with pytest.raises(ValueError):
        IndexedCoder([])


# ---- escapes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [-3, 3, -4, 13, 9, 100, -100, 2**15, -(2**15) - 1, 2**16, 2**31 + 5, -(2**31), 2**40, -(2**47) - 3,
     2**47, 2**50, -(2**55), 2**61 + 12345, 2**62 - 1, -(2**62)],
)
def test_escape_round_trip(value: int) -> None:
    """Values just outside a table's range and huge ones go through the escape path intact."""
    coder = small_table_coder()
    values = np.array([0, value, 1, value, -2, 2], dtype=np.int64)
    idx = np.array([0, 0, 0, 0, 0, 0])
    out = coder.decode(coder.encode(values, idx), idx)
    np.testing.assert_array_equal(out, values)


def test_escapes_in_several_tables_interleaved() -> None:
    coder = small_table_coder()
    rng = np.random.default_rng(3)
    n = 400
    idx = rng.integers(0, 3, n)
    values = np.where(idx == 1, 11, 0) + rng.integers(-2, 3, n)
    esc = rng.random(n) < 0.2
    values[esc] = rng.integers(-(2**40), 2**40, int(esc.sum()))
    out = coder.decode(coder.encode(values, idx), idx)
    np.testing.assert_array_equal(out, values)


def test_escape_beyond_int64_zigzag_refused() -> None:
    """A value whose zig-zag needs 64 bits cannot be described by nbits ∈ [0, 63]."""
    coder = small_table_coder()
    with pytest.raises(ValueError):
        coder.encode(np.array([2**62]), np.array([0]))
    with pytest.raises(ValueError):
        coder.encode(np.array([-(2**62) - 1]), np.array([0]))


def test_escape_costs_bits() -> None:
    """An escaped value costs more than an in-range one, and grows with its size."""
    coder = small_table_coder()
    idx = np.zeros(50, dtype=np.int64)
    base = len(coder.encode(np.zeros(50, dtype=np.int64), idx))
    small = np.zeros(50, dtype=np.int64)
    small[::5] = 3
    huge = np.zeros(50, dtype=np.int64)
    huge[::5] = 2**40
    assert base < len(coder.encode(small, idx)) < len(coder.encode(huge, idx))


# ---- garbage ------------------------------------------------------------------------------


def test_decode_garbage_raises_only_container_error(gauss_coder: IndexedCoder) -> None:
    """Random bytes either decode to *some* integers or raise ContainerError — nothing else."""
    rng = np.random.default_rng(11)
    coders = [gauss_coder, small_table_coder()]
    raised = 0
    for trial in range(400):
        coder = coders[trial % 2]
        n_bytes = int(rng.integers(0, 40))
        data = rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
        idx = rng.integers(0, len(coder.tables), int(rng.integers(0, 60)))
        try:
            out = coder.decode(data, idx)
        except ContainerError:
            raised += 1
            continue
        assert out.shape == idx.shape and out.dtype == np.int64
    assert raised > 0  # at least the odd-length inputs


@pytest.mark.parametrize("data", [b"\x01", b"\x01\x02\x03", b"\x00" * 5, b"\x12\x34\x56\x78\x9a"])
def test_decode_partial_word_raises(data: bytes) -> None:
    with pytest.raises(ContainerError, match="whole number of words"):
        small_table_coder().decode(data, np.zeros(3, dtype=np.int64))


def test_decode_zero_last_word_raises() -> None:
    """ANS output never ends in a zero word; such input is corrupt, reported as ContainerError."""
    with pytest.raises(ContainerError):
        small_table_coder().decode(b"\x05\x00\x00\x00" + b"\x00" * 4, np.zeros(3, dtype=np.int64))


# ---- bits() -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_bits_close_to_actual(gauss_coder: IndexedCoder, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    values, idx = _gaussian_sample(rng, 4000, n_tables=48)
    estimate = gauss_coder.bits(values, idx)
    actual = 8 * len(gauss_coder.encode(values, idx))
    assert estimate > 1000
    # ANS overhead is at most a couple of 32-bit words plus a tiny per-symbol loss.
    assert abs(actual - estimate) <= 0.01 * estimate + 96


def test_bits_counts_escapes_close_to_actual() -> None:
    coder = small_table_coder()
    rng = np.random.default_rng(5)
    values = rng.integers(-2, 3, 3000)
    values[::10] = rng.integers(-(2**30), 2**30, 300)
    idx = np.zeros_like(values)
    estimate = coder.bits(values, idx)
    actual = 8 * len(coder.encode(values, idx))
    assert abs(actual - estimate) <= 0.01 * estimate + 96


def test_bits_matches_hand_computed_value() -> None:
    # Table 0 normalised: [-2..2] → .1/1.001, .2/1.001, .4/1.001, ... ; escape 1e-3/1.001.
    coder = small_table_coder()
    z = 1.001
    values = np.array([0, 0, 1, 5])  # 5 escapes: zigzag 10 → 4 bits, plus 6 bits for nbits
    expected = -2 * math.log2(0.4 / z) - math.log2(0.2 / z) - math.log2(1e-3 / z) + 6 + 4
    assert coder.bits(values, np.zeros(4, dtype=np.int64)) == pytest.approx(expected, rel=1e-9)


# ---- tables -------------------------------------------------------------------------------


def test_logistic_table_adapter_prior_size() -> None:
    """w = 0.06, s = 0.05, tail 10^-9 (spec §6).

    Two-sided tail beyond ±(K+½)·w is 2/(1 + e^((K+½)·w/s)) = 2/(1 + e^(1.2·(K+½))):
    K = 17 leaves 2/(1+e^21.0) ≈ 1.5e-9 > 1e-9, K = 18 leaves 2/(1+e^22.2) ≈ 4.6e-10.
    So K = 18: 37 symbols −18…18.  (The research notes' "17 bins, −8…8" would leave
    2/(1+e^10.2) ≈ 7.4e-5 of the mass outside the table — not 1e-9.)
    """
    t = logistic_table(0.05, 0.06)
    assert t.offset == -18
    assert t.size == 37
    assert len(t.pmf) == 38
    # symmetric, peaked at 0, escape mass last
    body = t.pmf[:-1]
    np.testing.assert_allclose(body, body[::-1], rtol=1e-6, atol=1e-15)
    assert body.argmax() == 18
    assert t.pmf[-1] == pytest.approx(1e-9)
    assert 1 - body.sum() < 1e-9
    assert 2 / (1 + math.exp(1.2 * 8.5)) > 7e-5  # the −8…8 table would not meet the tail


def test_logistic_table_codes_adapter_weights() -> None:
    coder = IndexedCoder([logistic_table(0.05, 0.06)])
    rng = np.random.default_rng(2)
    w = np.rint(rng.logistic(0, 0.05, 500) / 0.06).astype(np.int64)
    w[:3] = [40, -40, 1000]  # escapes
    out = coder.decode(coder.encode(w, np.zeros_like(w)), np.zeros_like(w))
    np.testing.assert_array_equal(out, w)


def _reference_logistic_table(scale: float, step: float, tail_mass: float = 1e-9) -> tuple[int, np.ndarray]:
    """Spec §6 read literally: a linear search for K, two CDF values per symbol."""

    def cdf(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x / scale))

    k_max = 0
    while 2 * (1.0 - cdf((k_max + 0.5) * step)) > tail_mass:
        k_max += 1
    pmf = [cdf((i + 0.5) * step) - cdf((i - 0.5) * step) for i in range(-k_max, k_max + 1)]
    return -k_max, np.array(pmf + [max(tail_mass, 1e-9)], dtype=np.float64)


@pytest.mark.parametrize("scale, step", [(1 / 16, 1.0), (0.05, 0.06), (3.4375, 1.0), (97.125, 1.0),
                                         (1024.0, 1.0), (2.0, 0.0078125), (0.25, 64.0)])
def test_logistic_table_is_bit_identical_to_the_literal_definition(scale: float, step: float) -> None:
    """Encoder and decoder (of any udic version) must build the same table: the fast
    construction may not move a single bit of any probability, nor the tail bound."""
    offset, pmf = _reference_logistic_table(scale, step)
    table = logistic_table(scale, step)
    assert table.offset == offset
    np.testing.assert_array_equal(table.pmf.view(np.int64), pmf.view(np.int64))


def test_gaussian_tables_follow_spec() -> None:
    sigmas = tuple(scale_table())
    tables = gaussian_tables(sigmas)
    assert len(tables) == 64
    assert sigmas[0] == pytest.approx(math.exp(-565 / 256))
    assert sigmas[63] == pytest.approx(math.exp((-565 + 32 * 63) / 256))
    for sigma, t in zip(sigmas, tables):
        k = max(1, math.ceil(8 * sigma))
        assert t.offset == -k and t.size == 2 * k + 1
        assert t.pmf[-1] == ESCAPE_MASS
        # p(0) by the spec's formula
        p0 = 0.5 * math.erfc(-0.5 / (sigma * math.sqrt(2))) - 0.5 * math.erfc(0.5 / (sigma * math.sqrt(2)))
        assert t.pmf[k] == pytest.approx(p0, rel=1e-12)
    assert tables[0].size == 3  # σ ≈ 0.11 → K = max(1, ⌈0.88⌉) = 1


def test_tables_from_matrix_layout() -> None:
    pmf = np.array([[0.2, 0.5, 0.3, 0.0, 0.01], [0.6, 0.4, 0.0, 0.0, 0.02]])
    offsets = np.array([[-1, 3], [4, 2]])
    t0, t1 = tables_from_matrix(pmf, offsets)
    assert t0.offset == -1 and list(t0.pmf) == [0.2, 0.5, 0.3, 0.01]
    assert t1.offset == 4 and list(t1.pmf) == [0.6, 0.4, 0.02]


def test_escape_wire_format_matches_spec() -> None:
    """Decode by hand with constriction, following §5 literally, for one escaped value."""
    coder = small_table_coder()
    value = -1000  # zigzag 1999 = 0b11111001111, 11 bits: one chunk of 11 bits
    data = coder.encode(np.array([1, value]), np.array([0, 0]))
    ans = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
    model = constriction.stream.model.Categorical(coder.tables[0].pmf, perfect=False)
    assert list(ans.decode(model, 2)) == [3, 5]  # symbol 1-(-2)=3, then the escape (index n=5)
    assert ans.decode(constriction.stream.model.Uniform(64)) == 11
    assert ans.decode(constriction.stream.model.Uniform(2**11)) == 1999
    assert ans.is_empty()


def test_escape_wire_format_multi_chunk() -> None:
    coder = small_table_coder()
    value = 2**20 + 7  # zigzag 2^21 + 14: 22 bits → chunks of 16 then 6, most significant first
    u = 2 * value
    data = coder.encode(np.array([value]), np.array([0]))
    ans = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
    model = constriction.stream.model.Categorical(coder.tables[0].pmf, perfect=False)
    assert ans.decode(model) == 5
    assert ans.decode(constriction.stream.model.Uniform(64)) == 22
    assert ans.decode(constriction.stream.model.Uniform(2**16)) == u >> 6
    assert ans.decode(constriction.stream.model.Uniform(2**6)) == u & 63


def test_words_left_over_after_the_last_symbol_are_refused(gauss_coder: IndexedCoder) -> None:
    """A stream carrying more than its symbols is not what an encoder wrote."""
    values = np.array([0, 1, -2, 3, 0, 0, 1], dtype=np.int64)
    indexes = np.arange(values.size) % 4
    data = gauss_coder.encode(values, indexes)
    assert np.array_equal(gauss_coder.decode(data, indexes), values)
    with pytest.raises(ContainerError, match="left over"):
        gauss_coder.decode(data, indexes[:-3])


def test_segments_decode_in_order_and_end_exactly(gauss_coder: IndexedCoder) -> None:
    """One stream, several segments (the channel codec's slices): each decodes with its own
    indexes, and the stream must end with the last one."""
    rng = np.random.default_rng(3)
    segments = []
    for size in (5, 40, 1, 300):
        idx = rng.integers(0, len(gauss_coder.tables), size)
        segments.append((rng.integers(-30, 30, size), idx))
    data = gauss_coder.encode_segments(segments)
    reader = gauss_coder.decode_segments(data)
    for values, idx in segments:
        assert np.array_equal(reader.next(idx), values)
    reader.finish()
    # A single segment is the plain stream, byte for byte.
    assert gauss_coder.encode_segments(segments[1:2]) == gauss_coder.encode(*segments[1])
    # Stopping early leaves words over: refused.
    reader = gauss_coder.decode_segments(data)
    reader.next(segments[0][1])
    with pytest.raises(ContainerError, match="left over"):
        reader.finish()
