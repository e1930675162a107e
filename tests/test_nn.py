"""udic.nn's GDN and EntropyBottleneck against compressai's, which stay the reference.

Bit-identical outputs, the same state-dict keys both ways, and the same gradients,
so swapping the import in models.py changes no decoded pixel and no training step.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from udic import nn as unn

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from compressai._CXX import pmf_to_quantized_cdf as cxx_pmf_to_quantized_cdf
    from compressai.entropy_models import EntropyBottleneck as RefBottleneck
    from compressai.layers import GDN as RefGDN


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Move every parameter off its init so equality is not a coincidence of defaults."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))


def _pair(make_ours, make_ref, seed: int = 0):
    ref = make_ref()
    _randomise(ref, seed)
    ours = make_ours()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_state_dict_keys_and_output_match(inverse: bool) -> None:
    ours, ref = _pair(lambda: unn.GDN(8, inverse=inverse), lambda: RefGDN(8, inverse=inverse))
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 8, 7, 9, generator=torch.Generator().manual_seed(1), requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, out_ref = ours(x), ref(x_ref)
    assert torch.equal(out, out_ref)
    out.square().sum().backward()
    out_ref.square().sum().backward()
    assert torch.equal(x.grad, x_ref.grad)
    for (name, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_gdn_fresh_init_matches() -> None:
    ours, ref = unn.GDN(5), RefGDN(5)
    for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), name


def test_gdn_loads_a_reference_state_dict_with_fp16_buffers() -> None:
    """Weights files store the reparametrisation buffers in fp16: loading must round the same way."""
    ref = RefGDN(4)
    state = {k: (v.half() if "reparam" in k else v) for k, v in ref.state_dict().items()}
    ours = unn.GDN(4)
    ours.load_state_dict(state)
    ref.load_state_dict(state)
    x = torch.randn(1, 4, 5, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ours(x), ref(x))


def _bottlenecks(channels: int = 6, seed: int = 0):
    ours, ref = _pair(lambda: unn.EntropyBottleneck(channels), lambda: RefBottleneck(channels), seed)
    return ours, ref


def test_bottleneck_state_dict_keys_match_both_ways() -> None:
    ours, ref = _bottlenecks()
    assert list(ours.state_dict()) == list(ref.state_dict())
    back = RefBottleneck(6)
    back.load_state_dict(ours.state_dict())  # an udic.nn model's weights load into compressai
    ref.update(force=True)
    ours2 = unn.EntropyBottleneck(6)
    ours2.load_state_dict(ref.state_dict())  # and compressai's, CDF buffers included, into udic.nn
    for name in ("_offset", "_quantized_cdf", "_cdf_length"):
        assert torch.equal(getattr(ours2, name), getattr(ref, name)), name


@pytest.mark.parametrize("training", [False, True])
def test_bottleneck_forward_matches(training: bool) -> None:
    ours, ref = _bottlenecks(seed=2)
    ours.train(training)
    ref.train(training)
    x = 3 * torch.randn(2, 6, 4, 5, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(7)
    out, lik = ours(x)
    torch.manual_seed(7)  # the same noise draw in training mode
    out_ref, lik_ref = ref(x)
    assert torch.equal(out, out_ref)
    assert torch.equal(lik, lik_ref)


def test_bottleneck_gradients_and_loss_match() -> None:
    ours, ref = _bottlenecks(seed=5)
    x = 2 * torch.randn(1, 6, 3, 3, generator=torch.Generator().manual_seed(6))
    torch.manual_seed(0)
    _, lik = ours(x, training=True)
    torch.manual_seed(0)
    _, lik_ref = ref(x, training=True)
    (-torch.log2(lik).sum() + ours.loss()).backward()
    (-torch.log2(lik_ref).sum() + ref.loss()).backward()
    assert torch.equal(ours.loss(), ref.loss())
    for (name, p), (_, q) in zip(ours.named_parameters(), ref.named_parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_bottleneck_private_helpers_match() -> None:
    """adapt.py and models.factorized_pmf_table call these two directly."""
    ours, ref = _bottlenecks(seed=8)
    v = 4 * torch.randn(6, 1, 11, generator=torch.Generator().manual_seed(9))
    assert torch.equal(ours._logits_cumulative(v, stop_gradient=True), ref._logits_cumulative(v, stop_gradient=True))
    for a, b in zip(ours._likelihood(v, stop_gradient=True), ref._likelihood(v, stop_gradient=True)):
        assert torch.equal(a, b)
    assert torch.equal(ours._get_medians(), ref._get_medians())


def test_bottleneck_update_builds_the_same_cdfs() -> None:
    ours, ref = _bottlenecks(seed=10)
    with torch.no_grad():  # a wider support than the init's ±10, as after training
        for m in (ours, ref):
            m.quantiles.copy_(torch.tensor([-17.3, 0.4, 21.7]).repeat(6, 1, 1))
    assert ours.update(force=True) and ref.update(force=True)
    assert not ours.update()  # already built, not forced
    for name in ("_offset", "_quantized_cdf", "_cdf_length"):
        assert torch.equal(getattr(ours, name), getattr(ref, name)), name


@pytest.mark.parametrize("seed", range(6))
def test_pmf_to_quantized_cdf_matches_the_cxx(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    pmf = rng.dirichlet(np.full(n, 0.05 if seed % 2 else 1.0)).astype(np.float32)  # many tiny masses when odd
    pmf[rng.integers(0, n)] = 0.0  # a zero must still get a frequency
    values = pmf.tolist()
    assert unn.pmf_to_quantized_cdf(values, 16) == list(cxx_pmf_to_quantized_cdf(values, 16))


def test_pmf_to_quantized_cdf_refuses_an_empty_distribution() -> None:
    with pytest.raises(ValueError):
        unn.pmf_to_quantized_cdf([0.0, 0.0, 0.0])


def test_importing_udic_nn_does_not_import_compressai() -> None:
    import subprocess
    import sys

    code = "import sys, udic.nn; print('compressai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_whole_udic_model_gives_identical_outputs_with_udic_nn_layers() -> None:
    """models.py builds on udic.nn; swapping every GDN and the bottleneck back to
    compressai's, weights unchanged, gives the same outputs."""
    import copy

    from udic.testing import build_tiny_model

    ours = build_tiny_model(seed=0).eval()
    ref = copy.deepcopy(ours)
    swapped = 0
    for name, module in list(ref.named_modules()):
        if isinstance(module, (unn.GDN, unn.EntropyBottleneck)):
            parent_name, _, child = name.rpartition(".")
            parent = ref.get_submodule(parent_name) if parent_name else ref
            new = (RefGDN(module.gamma.shape[0], inverse=module.inverse) if isinstance(module, unn.GDN)
                   else RefBottleneck(module.channels))
            if isinstance(module, unn.GDN):
                new.load_state_dict(module.state_dict())
            else:  # the CDF buffers are derived: rebuilt by update(), as udic's loader does
                new.load_state_dict({k: v for k, v in module.state_dict().items() if not k.startswith("_")},
                                    strict=False)
                new.update(force=True)
            setattr(parent, child, new)
            swapped += 1
    ref.eval()  # the new layers were made in training mode
    assert swapped >= 2 and not any(isinstance(m, (unn.GDN, unn.EntropyBottleneck)) for m in ref.modules())
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours(x, torch.tensor([2.0])), ref(x, torch.tensor([2.0]))
    for field in ("x_hat", "y_bits", "z_bits"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
