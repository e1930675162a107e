"""udic.adapters: per-image synthesis adapters and their section (bitstream_spec.md §6)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from conftest import loaded, smooth_image
from udic import container as ctr
from udic.adapters import (
    DEFAULT_SCALE,
    DEFAULT_STEP,
    Adapter,
    AdapterSet,
    coder_for,
    decode_adapters,
    encode_adapters,
    install,
    quantised_params,
)
from udic.codec import Codec
from udic.errors import ContainerError

CHANNELS = [8, 16, 5]


def random_set(rng: np.random.Generator, specs: list[tuple[int, int]], spread: float = 2.0) -> AdapterSet:
    adapters = []
    for slot, rank in specs:
        c = CHANNELS[slot]
        adapters.append(
            Adapter(
                slot=slot,
                down=np.rint(rng.normal(0, spread, (rank, c))).astype(np.int64),
                up=np.rint(rng.normal(0, spread, (c, rank))).astype(np.int64),
            )
        )
    return AdapterSet(adapters=adapters)


def assert_same(a: AdapterSet, b: AdapterSet) -> None:
    assert len(a.adapters) == len(b.adapters)
    for x, y in zip(a.adapters, b.adapters):
        assert (x.slot, x.rank) == (y.slot, y.rank)
        np.testing.assert_array_equal(x.down, y.down)
        np.testing.assert_array_equal(x.up, y.up)


@pytest.mark.parametrize(
    "specs",
    [
        [(0, 1)],
        [(1, 3)],
        [(2, 2)],
        [(0, 1), (1, 2), (2, 3)],
        [(0, 2), (2, 1)],  # a gap in the slots
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_round_trip(specs: list[tuple[int, int]], seed: int) -> None:
    aset = random_set(np.random.default_rng(seed), specs)
    back = decode_adapters(encode_adapters(aset), CHANNELS)
    assert_same(aset, back)
    step_q, scale_q = quantised_params(DEFAULT_STEP, DEFAULT_SCALE)
    assert back.step == step_q / 4096 and back.scale == scale_q / 4096


def test_round_trip_with_escapes() -> None:
    aset = random_set(np.random.default_rng(3), [(0, 2), (1, 1)])
    aset.adapters[0].down[0, 0] = 19  # just outside −18…18
    aset.adapters[0].up[3, 1] = -19
    aset.adapters[1].up[0, 0] = 2**15 - 1  # the largest index a file may hold (spec §6)
    assert_same(aset, decode_adapters(encode_adapters(aset), CHANNELS))


def test_a_weight_index_past_the_bound_is_refused_both_ways() -> None:
    """An escape can code up to 2^62: weights near it decoded to inf / NaN pixels."""
    aset = random_set(np.random.default_rng(3), [(0, 1)])
    aset.adapters[0].up[0, 0] = 2**15
    with pytest.raises(ValueError, match="within"):
        encode_adapters(aset)
    # the same set written without the encoder's check: a forged file
    step_q, scale_q = quantised_params(aset.step, aset.scale)
    flat = np.concatenate([aset.adapters[0].down.ravel(), aset.adapters[0].up.ravel()]).astype(np.int64)
    forged = bytes([1, 0, 1]) + struct.pack("<HH", step_q, scale_q) + coder_for(step_q, scale_q).encode(
        flat, np.zeros_like(flat))
    with pytest.raises(ContainerError, match="weight index"):
        decode_adapters(forged, CHANNELS)


def test_round_trip_other_step_and_scale() -> None:
    aset = random_set(np.random.default_rng(4), [(1, 2)], spread=5.0)
    aset.step, aset.scale = 0.02, 0.1
    back = decode_adapters(encode_adapters(aset), CHANNELS)
    assert_same(aset, back)
    assert back.step == round(0.02 * 4096) / 4096
    assert back.scale == round(0.1 * 4096) / 4096


def test_section_layout_by_hand() -> None:
    """count, {slot, rank}…, step_q = round(0.06·2^12) = 246, scale_q = round(0.05·2^12) = 205."""
    down = np.array([[0, 1, -1, 0, 0, 2, 0, 0]])
    up = np.array([[1], [0], [0], [0], [0], [0], [-3], [0]])
    aset = AdapterSet(adapters=[Adapter(slot=0, down=down, up=up), Adapter(slot=2, down=np.zeros((1, 5), int), up=np.zeros((5, 1), int))])
    payload = encode_adapters(aset)
    assert payload[:5] == b"\x02\x00\x01\x02\x01"
    assert struct.unpack("<HH", payload[5:9]) == (246, 205)
    # The words: all weights (down then up, adapter by adapter) under one logistic table.
    flat = np.concatenate([down.ravel(), up.ravel(), np.zeros(10, int)])
    expected_words = coder_for(246, 205).encode(flat, np.zeros_like(flat))
    assert payload[9:] == expected_words


def test_encoder_refuses_bad_sets() -> None:
    with pytest.raises(ValueError):
        encode_adapters(AdapterSet(adapters=[]))
    aset = random_set(np.random.default_rng(0), [(0, 1)])
    aset.step = 0.0
    with pytest.raises(ValueError):
        encode_adapters(aset)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00",  # zero adapters
        b"\x01\x03\x01" + struct.pack("<HH", 246, 205),  # slot 3 does not exist
        b"\x01\x00\x00" + struct.pack("<HH", 246, 205),  # rank 0
        b"\x01\x00\x41" + struct.pack("<HH", 246, 205),  # rank 65
        b"\x01\x00\x01" + struct.pack("<HH", 0, 205),  # zero step
        b"\x01\x00\x01" + struct.pack("<HH", 246, 0),  # zero scale
        b"\x01\x00\x01\xf6",  # truncated step/scale
        b"\x02\x00\x01",  # second adapter missing
        b"\x01\x00\x01" + struct.pack("<HH", 246, 205) + b"\x01\x02\x03",  # partial word
    ],
)
def test_malformed_sections(payload: bytes) -> None:
    with pytest.raises(ContainerError):
        decode_adapters(payload, CHANNELS)


def test_garbage_words_only_container_error() -> None:
    rng = np.random.default_rng(12)
    head = b"\x01\x01\x02" + struct.pack("<HH", 246, 205)
    for _ in range(100):
        words = rng.integers(0, 256, 4 * int(rng.integers(0, 8)), dtype=np.uint8).tobytes()
        try:
            aset = decode_adapters(head + words, CHANNELS)
        except ContainerError:
            continue
        assert aset.adapters[0].down.shape == (2, 16) and aset.adapters[0].up.shape == (16, 2)


def test_install_dequantises_and_clears() -> None:
    slots = torch.nn.ModuleList([_Slot(), _Slot(), _Slot()])
    aset = random_set(np.random.default_rng(5), [(1, 2)])
    install(slots, aset, torch.device("cpu"))
    step = 246 / 4096
    assert slots[0].down is None and slots[2].down is None
    np.testing.assert_allclose(slots[1].down.numpy(), aset.adapters[0].down * step, rtol=1e-6)
    np.testing.assert_allclose(slots[1].up.numpy(), aset.adapters[0].up * step, rtol=1e-6)
    install(slots, None, torch.device("cpu"))
    assert all(s.down is None and s.up is None for s in slots)


class _Slot(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down = self.up = None

    def set(self, down, up) -> None:
        self.down, self.up = down, up

    def clear(self) -> None:
        self.down = self.up = None


# ---- in the codec -------------------------------------------------------------------------


def test_codec_applies_adapters(tiny_codec: Codec) -> None:
    image = loaded(smooth_image(40, 56, seed=21))
    channels = [s.channels for s in tiny_codec.model.g_s.slots]
    rng = np.random.default_rng(6)
    aset = AdapterSet(
        adapters=[
            Adapter(slot=0, down=rng.integers(-8, 9, (2, channels[0])), up=rng.integers(-8, 9, (channels[0], 2))),
            Adapter(slot=2, down=rng.integers(-8, 9, (1, channels[2])), up=rng.integers(-8, 9, (channels[2], 1))),
        ]
    )
    plain = tiny_codec.encode(image, 3.0)
    adapted = tiny_codec.encode(image, 3.0, adapter_set=aset)
    assert adapted.header.flags & ctr.Flags.ADAPTERS
    assert not plain.header.flags & ctr.Flags.ADAPTERS
    cont_plain, cont_adapted = ctr.parse(plain.data), ctr.parse(adapted.data)
    # Same latents; the only difference is the adapters section.
    assert cont_plain.sections[ctr.Section.LATENTS] == cont_adapted.sections[ctr.Section.LATENTS]
    assert adapted.header.latent_crc == plain.header.latent_crc
    assert_same(decode_adapters(cont_adapted.sections[ctr.Section.ADAPTERS], channels), aset)

    out_plain = np.asarray(tiny_codec.decode(plain.data).image).astype(int)
    out_adapted = np.asarray(tiny_codec.decode(adapted.data).image).astype(int)
    assert out_plain.shape == out_adapted.shape == (40, 56, 3)
    assert np.abs(out_plain - out_adapted).mean() > 0.5
    # The adapters are uninstalled after decoding: no leak into the next image.
    assert not any(s.enabled for s in tiny_codec.model.g_s.slots)
    np.testing.assert_array_equal(np.asarray(tiny_codec.decode(plain.data).image), out_plain)


def test_codec_adapters_match_manual_synthesis(tiny_codec: Codec) -> None:
    """Decoding with adapters equals synthesising with the slots set to k·step by hand."""
    image = loaded(smooth_image(24, 20, seed=22))
    c = tiny_codec.model.g_s.slots[1].channels
    rng = np.random.default_rng(7)
    aset = AdapterSet(adapters=[Adapter(slot=1, down=rng.integers(-6, 7, (3, c)), up=rng.integers(-6, 7, (c, 3)))])
    result = tiny_codec.encode(image, 1.0, adapter_set=aset)
    decoded = np.asarray(tiny_codec.decode(result.data).image)
    cont = ctr.parse(result.data)
    _, residuals, means = tiny_codec.decode_integers(cont)
    y_hat = torch.from_numpy(residuals.astype(np.float32)) + means
    step = 246 / 4096
    slot = tiny_codec.model.g_s.slots[1]
    slot.set(torch.from_numpy(aset.adapters[0].down * step).float(), torch.from_numpy(aset.adapters[0].up * step).float())
    try:
        with torch.no_grad():
            _, inv_gain = tiny_codec.model.gains(1.0)
            x = tiny_codec.model.g_s(y_hat[None] * inv_gain.view(1, -1, 1, 1))
    finally:
        slot.clear()
    manual = x[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()[:24, :20]
    np.testing.assert_array_equal(decoded, manual)


@pytest.mark.parametrize("specs", [[(2, 3), (0, 1)], [(1, 2), (1, 2)]])
def test_slots_must_increase(specs: list[tuple[int, int]]) -> None:
    """Spec §6: slots strictly increasing — a repeated slot would silently overwrite."""
    aset = random_set(np.random.default_rng(0), specs)
    with pytest.raises(ValueError, match="increasing"):
        encode_adapters(aset)
    good = encode_adapters(random_set(np.random.default_rng(0), [(0, 1), (1, 2)]))
    bad = bytearray(good)
    bad[3] = 0  # second adapter's slot byte: 1 -> 0 (not increasing)
    with pytest.raises(ContainerError, match="corrupt adapters"):
        decode_adapters(bytes(bad), CHANNELS)
