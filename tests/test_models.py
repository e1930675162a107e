"""udic.models / udic.layers: LoRA merging, the exact integer hyper-synthesis, scale indexes."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import build_tiny_model
from udic import modelfile
from udic.layers import AdapterSlot, LoRAConv2d, LoRAConvTranspose2d, conv, deconv
from udic.models import (
    SCALE_LEVELS,
    IntegerHyperSynthesis,
    ModelConfig,
    UdicModel,
    rate_mix,
    scale_indexes,
    scale_table,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(1234)


def with_delta(layer: LoRAConv2d | LoRAConvTranspose2d, rate: str = "r1", rank: int = 2, alpha: float = 3.0):
    delta = layer.add_lora(rate, rank, alpha)
    with torch.no_grad():
        delta.B.normal_(0.0, 0.1)
    return delta


# ---- LoRA ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: conv(4, 6), lambda: deconv(4, 6), lambda: conv(3, 5, 3, 1)])
def test_merge_unmerge_is_bit_exact(make) -> None:
    layer = make()
    delta = with_delta(layer)
    base = layer.weight.detach().clone()
    layer.merge("r1")
    assert not torch.equal(layer.weight, base)
    # The merge is computed in float64 and rounded once.
    expected = (base.double() + delta.delta_float64()).float()
    assert torch.equal(layer.weight.detach(), expected)
    torch.testing.assert_close(layer.weight.detach(), base + delta.delta().detach(), rtol=0, atol=1e-6)
    layer.unmerge()
    assert torch.equal(layer.weight, base)
    # Repeated cycles never drift.
    for _ in range(5):
        layer.merge("r1")
        layer.unmerge()
    assert torch.equal(layer.weight, base)


@pytest.mark.parametrize("make, shape", [(lambda: conv(4, 6), (2, 4, 16, 12)), (lambda: deconv(4, 6), (2, 4, 5, 7))])
def test_merged_forward_equals_active_delta(make, shape) -> None:
    layer = make()
    with_delta(layer, "r1")
    x = torch.randn(shape)
    with torch.no_grad():
        plain = layer(x)
        layer.active_rate = "r1"
        active = layer(x)
        layer.merge("r1")  # merged: effective_weight must not add the delta a second time
        merged = layer(x)
        layer.unmerge()
        again = layer(x)
    assert not torch.allclose(plain, active)
    torch.testing.assert_close(merged, active, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again, active, rtol=0, atol=0)


def test_conv_transpose_delta_shape_and_effect() -> None:
    """ConvTranspose weights are (C_in, C_out, k, k); the delta must match and change the output."""
    layer = deconv(3, 7, kernel=5, stride=2)
    delta = with_delta(layer, "r0", rank=1, alpha=1.0)
    assert delta.delta().shape == layer.weight.shape == (3, 7, 5, 5)
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        before = layer(x)
        layer.merge("r0")
        after = layer(x)
    assert after.shape == before.shape == (1, 7, 8, 8)
    assert (after - before).abs().max() > 1e-4


def test_merge_switches_rates_exactly() -> None:
    layer = conv(4, 4)
    d1 = with_delta(layer, "r1")
    d2 = with_delta(layer, "r2")
    base = layer.weight.detach().clone()
    layer.merge("r1")
    layer.merge("r2")  # implies unmerging r1 first
    assert torch.equal(layer.weight.detach(), (base.double() + d2.delta_float64()).float())
    layer.merge("r5")  # no delta for r5: back to the exact base
    assert torch.equal(layer.weight, base)
    del d1


def test_fresh_delta_is_identity() -> None:
    layer = conv(3, 3)
    layer.add_lora("r0", 4)
    base = layer.weight.detach().clone()
    layer.merge("r0")
    assert torch.equal(layer.weight, base)


def test_merged_weight_float64_formula() -> None:
    layer = deconv(3, 4)
    d = with_delta(layer, "r3", rank=3, alpha=1.5)
    w = layer.merged_weight_float64({"r3": 1.0}).numpy()
    expected = layer.weight.detach().double() + (d.B.detach().double() @ d.A.detach().double()).view(layer.weight.shape) * 0.5
    np.testing.assert_allclose(w, expected.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(layer.merged_weight_float64({}).numpy(), layer.weight.detach().double().numpy())
    # Uses the base weight even while a (float32) merge is active.
    layer.merge("r3")
    np.testing.assert_array_equal(layer.merged_weight_float64({"r3": 1.0}).numpy(), w)


def test_rate_mix_interpolates_neighbouring_deltas() -> None:
    assert rate_mix(512, 6) == {"r2": 1.0}
    assert rate_mix(2 * 256 + 64, 6) == {"r2": 0.75, "r3": 0.25}
    assert rate_mix(5 * 256, 6) == {"r5": 1.0}


def test_fractional_merge_is_linear_in_the_deltas() -> None:
    layer = conv(3, 4)
    d2 = with_delta(layer, "r2", rank=2)
    d3 = with_delta(layer, "r3", rank=2)
    base = layer.weight.detach().double()
    layer.merge_mix({"r2": 0.75, "r3": 0.25})
    expected = base + 0.75 * d2.delta_float64() + 0.25 * d3.delta_float64()
    torch.testing.assert_close(layer.weight.detach().double(), expected, rtol=0, atol=1e-6)
    layer.unmerge()
    assert torch.equal(layer.weight.detach().double(), base)
    # A rate with no delta here (the base rate) contributes nothing.
    layer.merge_mix({"r4": 1.0})
    assert torch.equal(layer.weight.detach().double(), base)


def test_model_merge_rate_touches_every_lora_layer() -> None:
    model = UdicModel(ModelConfig(N=4, M=6))
    layers = model.lora_modules()
    assert len(layers) >= 10
    before = [l.weight.detach().clone() for l in layers]
    for l in layers:
        with_delta(l, "r1", rank=1)
    model.merge_rate(256)  # stored rate 256 = quality 1.0 = delta r1
    assert all(not torch.equal(l.weight, b) for l, b in zip(layers, before))
    model.unmerge()
    assert all(torch.equal(l.weight, b) for l, b in zip(layers, before))


def test_adapter_slot_formula() -> None:
    slot = AdapterSlot(4)
    h = torch.randn(1, 4, 3, 5)
    assert torch.equal(slot(h), h)
    down, up = torch.randn(2, 4), torch.randn(4, 2)
    slot.set(down, up)
    expected = h + torch.einsum("cr,rk,nkhw->nchw", up, down, h)
    torch.testing.assert_close(slot(h), expected)


# ---- gains ---------------------------------------------------------------------------------


def test_fractional_gains_are_geometric() -> None:
    model = UdicModel(ModelConfig(N=4, M=6))
    with torch.no_grad():
        model.log_gain.copy_(torch.randn_like(model.log_gain))
    g2, _ = model.gains(2.0)
    g3, _ = model.gains(3.0)
    g25, ig25 = model.gains(2.5)
    torch.testing.assert_close(g25, torch.sqrt(g2 * g3))
    torch.testing.assert_close(g2, model.log_gain[2].exp())
    g5, _ = model.gains(5.0)
    torch.testing.assert_close(g5, model.log_gain[5].exp())
    torch.testing.assert_close(ig25, torch.sqrt(model.gains(2.0)[1] * model.gains(3.0)[1]))


# ---- integer hyper-synthesis ---------------------------------------------------------------


@pytest.fixture(scope="module")
def file_model(tmp_path_factory: pytest.TempPathFactory) -> UdicModel:
    """The tiny model as a decoder sees it: reloaded from its fp16 weights file."""
    path = tmp_path_factory.mktemp("models") / "m.safetensors"
    modelfile.save(build_tiny_model(seed=3), path)
    return modelfile.load(path).model


def _random_z(seed: int, shape=(1, 8, 3, 4), spread: int = 12) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(-spread, spread + 1, shape))


@pytest.mark.parametrize("rate_key", [None, "r2"])
def test_integer_hyper_synthesis_thread_independent(file_model: UdicModel, rate_key: str | None) -> None:
    hyper = IntegerHyperSynthesis(file_model.h_s, {rate_key: 1.0} if rate_key else None)
    z = _random_z(0, (1, 8, 5, 7), spread=30)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = hyper(z)
        torch.set_num_threads(2)
        two = hyper(z)
    finally:
        torch.set_num_threads(saved)
    assert one.dtype == torch.int64 and one.shape == (1, 24, 20, 28)
    assert torch.equal(one, two)
    assert one.abs().max() > 0


@pytest.mark.parametrize("rate_key", [None, "r2"])
def test_integer_hyper_synthesis_close_to_float(file_model: UdicModel, rate_key: str | None) -> None:
    hyper = IntegerHyperSynthesis(file_model.h_s, {rate_key: 1.0} if rate_key else None)
    h_s = copy.deepcopy(file_model.h_s).double()
    if rate_key:
        for layer in h_s:
            if hasattr(layer, "merge"):
                layer.merge(rate_key)
    z = _random_z(1)
    with torch.no_grad():
        reference = h_s(z.double()) * 256
    fixed = hyper(z).double()
    diff = (fixed - reference).abs()
    assert reference.abs().max() > 20  # a non-trivial output
    assert diff.max() <= 4.0  # a few fixed-point units (1/256 each)
    assert diff.mean() <= 1.0


def test_integer_hyper_synthesis_lora_changes_output(file_model: UdicModel) -> None:
    z = _random_z(2)
    base = IntegerHyperSynthesis(file_model.h_s, None)(z)
    r2 = IntegerHyperSynthesis(file_model.h_s, {"r2": 1.0})(z)
    r1 = IntegerHyperSynthesis(file_model.h_s, {"r1": 1.0})(z)  # no r1 delta: same as base
    assert not torch.equal(base, r2)
    assert torch.equal(base, r1)


def _one_layer(weight: float, bias: float, relu: bool = False) -> nn.Sequential:
    layer = LoRAConv2d(1, 1, 1, stride=1)
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.fill_(bias)
    return nn.Sequential(layer, nn.ReLU()) if relu else nn.Sequential(layer)


def test_integer_layer_hand_computed() -> None:
    """W = 0.75 (= 0.75·2^0 → s = 13), b = 0.1: W_int = 6144, b_int = rint(0.1·2^21) = 209715.

    z = 3: h = 768, (768·6144 + 209715) / 8192 = 601.59… → 601.
    z = −3: (−768·6144 + 209715) / 8192 = −550.39… → floor → −551.
    """
    hyper = IntegerHyperSynthesis(_one_layer(0.75, 0.1))
    out = hyper(torch.tensor([3, -3, 0]).view(1, 1, 1, 3))
    assert out.view(-1).tolist() == [601, -551, 25]  # 0: 209715 / 8192 = 25.6 → 25
    relu = IntegerHyperSynthesis(_one_layer(0.75, 0.1, relu=True))
    assert relu(torch.tensor([3, -3]).view(1, 1, 1, 2)).view(-1).tolist() == [601, 0]


def test_integer_activations_clamped() -> None:
    """Inputs clamp to ±2^20 (z·2^8), and so do layer outputs."""
    hyper = IntegerHyperSynthesis(_one_layer(1.0, 0.0))  # frexp(1) = 0.5·2^1 → s = 12
    assert hyper(torch.tensor([5000, -5000]).view(1, 1, 1, 2)).view(-1).tolist() == [2**20, -(2**20)]
    doubling = IntegerHyperSynthesis(_one_layer(2.0, 0.0))
    assert doubling(torch.tensor([3000, 100]).view(1, 1, 1, 2)).view(-1).tolist() == [2**20, 51200]


@pytest.mark.parametrize(
    "maxabs, shift",
    [(0.0, 0), (0.75, 13), (0.5, 13), (0.4999, 14), (1.0, 12), (1.5, 12), (2.0**-20, 24), (2.0**-11, 23), (2.0**14, 0), (8191.0, 0)],
)
def test_shift_rule(maxabs: float, shift: int) -> None:
    """s = min(max(13 − e, 0), 24) with maxabs = m·2^e, 0.5 ≤ m < 1; 0 for an all-zero channel."""
    assert IntegerHyperSynthesis._shift(maxabs) == shift


def test_integer_weights_per_output_channel_deconv() -> None:
    """For a ConvTranspose the output channel is weight axis 1; shifts must follow it."""
    layer = LoRAConvTranspose2d(2, 2, 1, stride=1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[[[0.75]], [[3.0]]], [[[0.25]], [[0.0]]]]))  # (in, out, 1, 1)
        layer.bias.zero_()
    hyper = IntegerHyperSynthesis(nn.Sequential(layer))
    _, w_int, _, scale, _ = hyper.layers[0]
    # out channel 0: max 0.75 → s 13; out channel 1: max 3.0 = 0.75·2^2 → s 11
    assert scale.tolist() == [2.0**13, 2.0**11]
    assert w_int[:, 0, 0, 0].tolist() == [6144, 2048]
    assert w_int[:, 1, 0, 0].tolist() == [6144, 0]
    out = hyper(torch.tensor([[[[1]], [[2]]]]))
    # channel 0: (256·6144 + 512·2048)/8192 = 320; channel 1: 256·6144/2048 = 768
    assert out.view(-1).tolist() == [320, 768]


# ---- scale indexes -------------------------------------------------------------------------


def test_scale_indexes_hand_computed() -> None:
    t = torch.tensor([-10**9, -600, -566, -565, -564, -533, -532, -501, -500, 0, 1451, 1452, 10**9], dtype=torch.int64)
    # ceil((t + 565) / 32), clipped to 0…63
    assert scale_indexes(t).tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 18, 63, 63, 63]


def test_scale_indexes_match_table_meaning() -> None:
    """Index k is the smallest table whose σ_k = exp((T0 + S·k)/256) is ≥ exp(t/256)."""
    t = torch.arange(-700, 1600, dtype=torch.int64)
    idx = scale_indexes(t)
    sig = scale_table()
    for ti, k in zip(t.tolist(), idx.tolist()):
        if -565 < ti <= 1451:
            assert sig[k] >= math.exp(ti / 256) * (1 - 1e-12)
            assert sig[k - 1] < math.exp(ti / 256)
    assert idx.min() == 0 and idx.max() == SCALE_LEVELS - 1


@pytest.mark.parametrize("band_rows", [1, 4, 7])
def test_integer_hyper_synthesis_bands_are_exact(file_model: UdicModel, band_rows: int) -> None:
    """Bands with a halo give the same integers as the whole image (bounded memory for huge ones)."""
    hyper = IntegerHyperSynthesis(file_model.h_s, {"r2": 1.0})
    z = _random_z(5, (1, 8, 21, 6), spread=20)
    whole = hyper(z)
    rebuilt = torch.empty_like(whole)
    rows = []
    for top, bottom, part in hyper.bands(z, band_rows):
        rebuilt[..., top:bottom, :] = part
        rows.append((top, bottom))
    assert rows[0][0] == 0 and rows[-1][1] == whole.shape[-2]
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
    assert torch.equal(rebuilt, whole)
