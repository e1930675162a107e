"""udic.adapt: SGA, presets, and content-adaptive encoding on a tiny model.

Runs single-threaded and with few iterations: the point is the contract (valid file,
never worse in RD cost, determinism, gating, clean model state), not the gain.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from conftest import dct_basis, loaded, smooth_image
from udic import container as ctr
from udic import modelfile
from udic.adapt import (
    DEFAULT_EFFORT,
    MAX_EFFORT,
    AdaptConfig,
    adapt_encode,
    rd_lambda,
    sga_round,
)
from udic.adapters import decode_adapters
from udic.codec import Codec, codec_for_file
from udic.errors import UsageError
from udic.imageio import LoadedImage
from udic.models import ModelConfig, UdicModel

QUICK = dict(iterations=12, adapter_steps=6, patience=1000, rdoq=False, loop_filter=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Single-threaded: far faster next to a busy CPU, and a fixed thread count for determinism."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory) -> Codec:
    torch.manual_seed(3)
    model = UdicModel(ModelConfig(N=8, M=12))
    with torch.no_grad():
        basis = dct_basis(12, 16)
        model.g_a.linear.weight.copy_(basis)
        model.g_s.linear.weight.copy_(basis)
        model.g_a.linear.bias.zero_()
        model.g_s.linear.bias.zero_()
        model.h_a[-1].weight.mul_(15.0)  # hyper-latents not all zero
        # Non-trivial (and rather harmful) residual branches: the synthesis slots
        # matter, so an adapter has something to repair.
        model.g_a.res[-1].weight.normal_(0.0, 0.02)
        model.g_s.out.weight.normal_(0.0, 0.03)
        model.g_s.out.bias.normal_(0.0, 0.01)
    model.entropy_bottleneck.update(force=True)
    path = tmp_path_factory.mktemp("adapt") / "tiny.safetensors"
    modelfile.save(model.eval(), path)
    return codec_for_file(path)


@pytest.fixture(scope="module")
def image() -> LoadedImage:
    return loaded(smooth_image(48, 64, seed=7))


def actual_cost(codec: Codec, image: LoadedImage, data: bytes, quality: float) -> float:
    out = np.asarray(codec.decode(data).image).astype(np.float64)
    mse = float(np.mean((out - image.rgb.astype(np.float64)) ** 2))
    return 8 * len(data) / image.rgb[..., 0].size + rd_lambda(codec, quality) * mse


def assert_clean(codec: Codec) -> None:
    """No adapter left installed, parameters' requires_grad as loaded, h_s LoRA off."""
    assert not any(s.enabled for s in codec.model.g_s.slots)
    assert all(p.requires_grad for p in codec.model.parameters())
    assert all(getattr(m, "active_rate", None) is None for m in codec.model.h_s.modules())


# ---- SGA -----------------------------------------------------------------------------------


def test_sga_samples_between_floor_and_ceil() -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.randn(4000, generator=g) * 3
    for tau in (0.5, 0.2, 0.05):
        soft = sga_round(v, tau, g)
        assert bool(((soft >= v.floor() - 1e-5) & (soft <= v.ceil() + 1e-5)).all())
        hard = sga_round(v, tau, g, hard=True)
        assert bool(((hard == v.floor()) | (hard == v.ceil())).all())
    # At τ = 0.5 the choice is genuinely random for a fraction near ½.
    hard = sga_round(torch.full((2000,), 2.45), 0.5, g, hard=True)
    assert 0.1 < float((hard == 3).float().mean()) < 0.9


def test_sga_tends_to_hard_rounding() -> None:
    g = torch.Generator().manual_seed(1)
    v = torch.randn(4000, generator=g) * 3
    v = v[(v - v.floor() - 0.5).abs() > 0.05]
    out = sga_round(v, 1e-3, g)
    torch.testing.assert_close(out, torch.round(v), atol=1e-4, rtol=0)


def test_sga_gradient_and_generator_determinism() -> None:
    v = torch.tensor([0.3, 1.7, -2.2], requires_grad=True)
    a = sga_round(v, 0.3, torch.Generator().manual_seed(5))
    a.sum().backward()
    assert v.grad is not None and bool(torch.isfinite(v.grad).all())
    b = sga_round(v.detach(), 0.3, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.detach(), b, rtol=0, atol=0)


# ---- config --------------------------------------------------------------------------------


def test_presets_and_schedule() -> None:
    assert AdaptConfig() == AdaptConfig.for_effort(DEFAULT_EFFORT)
    assert AdaptConfig.for_effort(0).iterations == 0 and AdaptConfig.for_effort(0).adapter_steps == 0
    assert AdaptConfig.for_effort(1).rdoq and AdaptConfig.for_effort(1).iterations == 0
    assert not AdaptConfig.for_effort(0).rdoq
    its = [AdaptConfig.for_effort(e).iterations for e in range(2, MAX_EFFORT + 1)]
    assert its == sorted(its) and its[0] > 0
    for bad in (-1, MAX_EFFORT + 1, 1.5, True):
        with pytest.raises(UsageError):
            AdaptConfig.for_effort(bad)  # type: ignore[arg-type]
    cfg = AdaptConfig.for_effort(3, iterations=50, seed=9)
    assert cfg.seed == 9 and cfg.t0 == 10
    taus = [cfg.tau(t) for t in range(50)]
    assert taus[0] == taus[cfg.t0] == 0.5
    assert all(a >= b for a, b in zip(taus, taus[1:]))
    assert taus[-1] == pytest.approx(0.1, rel=0.05)


def test_lambda_interpolation(codec: Codec) -> None:
    lams = codec.config.lambdas
    assert rd_lambda(codec, 2.0) == pytest.approx(lams[2])
    assert rd_lambda(codec, 2.5) == pytest.approx(math.sqrt(lams[2] * lams[3]))
    assert rd_lambda(codec, len(lams) - 1) == pytest.approx(lams[-1])


# ---- adapt_encode ----------------------------------------------------------------------------


def test_result_decodes_and_is_never_worse(codec: Codec, image: LoadedImage) -> None:
    calls: list[tuple[str, int, int, float]] = []
    cfg = AdaptConfig.for_effort(2, **QUICK)
    before = {k: v.clone() for k, v in codec.model.state_dict().items()}
    res = adapt_encode(codec, image, 3.0, cfg, progress=lambda *a: calls.append(a))
    assert_clean(codec)
    after = codec.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the decoder never changes
    assert codec.decode(res.data).image.size == (64, 48)
    plain = codec.encode(image, 3.0).data
    assert res.rd_after <= res.rd_before
    assert res.rd_before == pytest.approx(actual_cost(codec, image, plain, 3.0), rel=1e-9)
    assert res.rd_after == pytest.approx(actual_cost(codec, image, res.data, 3.0), rel=1e-9)
    assert res.rd_after == min(res.candidates.values())
    # On this image a dozen SGA steps do pay.
    assert res.candidates["latents"] < res.candidates["none"]
    assert res.iterations == 12 and res.bits["total"] == 8 * len(res.data)
    phases = {c[0] for c in calls}
    assert {"latents", "evaluate"} <= phases
    assert calls[0] == ("evaluate", 0, calls[0][2], calls[0][3]) and math.isnan(calls[0][3])  # the line starts at once
    assert all(math.isfinite(c[3]) for c in calls[1:])
    assert [c[1] for c in calls if c[0] == "latents"] == list(range(1, 13))


def test_fractional_quality(codec: Codec, image: LoadedImage) -> None:
    res = adapt_encode(codec, image, 2.5, AdaptConfig.for_effort(2, iterations=6))
    assert ctr.parse(res.data).header.rate == 640
    assert res.rd_after == pytest.approx(actual_cost(codec, image, res.data, 2.5), rel=1e-9)


def test_effort_zero_is_the_plain_encode(codec: Codec, image: LoadedImage) -> None:
    res = adapt_encode(codec, image, 4.0, AdaptConfig.for_effort(0))
    assert res.data == codec.encode(image, 4.0).data
    assert res.chosen == "none" and res.iterations == 0 and res.rd_after == res.rd_before


def test_same_seed_same_bytes(codec: Codec, image: LoadedImage) -> None:
    cfg = AdaptConfig.for_effort(2, seed=11, **QUICK)
    a = adapt_encode(codec, image, 5.0, cfg)
    b = adapt_encode(codec, image, 5.0, cfg)
    assert a.data == b.data and a.candidates == b.candidates


def test_time_budget_stops_early(codec: Codec, image: LoadedImage) -> None:
    cfg = AdaptConfig.for_effort(5, time_budget=0.01)
    res = adapt_encode(codec, image, 3.0, cfg)
    assert res.iterations < cfg.iterations and res.adapter_iterations < cfg.adapter_steps
    assert res.rd_after <= res.rd_before
    assert codec.decode(res.data).image.size == (64, 48)
    assert_clean(codec)


def test_early_stopping(codec: Codec, image: LoadedImage) -> None:
    # A zero learning rate cannot improve the cost for long: stop well before the end.
    cfg = AdaptConfig.for_effort(3, lr=0.0, adapter_steps=0, patience=3, stop_after=0.0)
    res = adapt_encode(codec, image, 3.0, cfg)
    assert res.iterations < cfg.iterations // 4


def test_no_early_stop_while_annealing(codec: Codec, image: LoadedImage) -> None:
    # SGA's cost rises while τ is high; the stopper waits for the second half of the run.
    cfg = AdaptConfig.for_effort(3, lr=0.0, adapter_steps=0, patience=3)
    res = adapt_encode(codec, image, 3.0, cfg)
    assert cfg.iterations // 2 <= res.iterations < cfg.iterations


def test_adapters_rejected_when_they_cost_more(codec: Codec, image: LoadedImage) -> None:
    # Frozen (lr 0) large random weights on a coarse grid under a very narrow prior:
    # expensive to send and harmful to the picture.  The gate must throw them away.
    cfg = AdaptConfig.for_effort(
        2, iterations=8, adapter_steps=2, adapter_lr=0.0, init_std=1.0, step=0.5, scale=0.01, patience=1000,
        rdoq=False, loop_filter=False,
    )
    res = adapt_encode(codec, image, 3.0, cfg)
    [with_adapters] = [n for n in res.candidates if n.endswith("adapters")]
    assert res.candidates[with_adapters] > min(res.candidates["none"], res.candidates["latents"])
    assert res.chosen != with_adapters and res.bits["adapters"] == 0
    assert not ctr.parse(res.data).header.flags & ctr.Flags.ADAPTERS
    assert_clean(codec)


def test_adapters_kept_when_they_pay(codec: Codec, image: LoadedImage) -> None:
    cfg = AdaptConfig.for_effort(2, adapter_lr=0.05, bf16=False, iterations=10, adapter_steps=30, patience=1000,
                                 rdoq=False, loop_filter=False)
    res = adapt_encode(codec, image, 5.0, cfg)
    assert_clean(codec)
    assert res.chosen == "latents+adapters", res.candidates
    assert res.rd_after < res.candidates["latents"] <= res.candidates["none"]
    cont = ctr.parse(res.data)
    assert cont.header.flags & ctr.Flags.ADAPTERS
    channels = [s.channels for s in codec.model.g_s.slots]
    aset = decode_adapters(cont.sections[ctr.Section.ADAPTERS], channels)
    assert [(a.slot, a.rank) for a in aset.adapters] == [(1, 2)]  # the defaults
    assert res.bits["adapters"] == 8 * len(cont.sections[ctr.Section.ADAPTERS])
    assert res.rd_after == pytest.approx(actual_cost(codec, image, res.data, 5.0), rel=1e-9)
    assert_clean(codec)  # decoding installs and removes them again


def test_adapters_without_latent_refinement(codec: Codec, image: LoadedImage) -> None:
    cfg = AdaptConfig.for_effort(2, iterations=0, adapter_steps=20, adapter_lr=0.05, bf16=False, rdoq=False,
                                 loop_filter=False)
    res = adapt_encode(codec, image, 5.0, cfg)
    assert res.iterations == 0 and set(res.candidates) <= {"none", "adapters"}
    assert res.rd_after <= res.rd_before
    assert res.rd_after == pytest.approx(actual_cost(codec, image, res.data, 5.0), rel=1e-9)
    assert_clean(codec)


def test_tiled_image_adapts_per_tile_with_shared_adapter(codec: Codec) -> None:
    img = loaded(smooth_image(120, 150, seed=9))
    calls: list[tuple[str, int, int, float]] = []
    cfg = AdaptConfig.for_effort(2, iterations=4, adapter_steps=4, patience=100, rdoq=False, loop_filter=False)
    res = adapt_encode(codec, img, 3.0, cfg, progress=lambda *a: calls.append(a), tile=64)
    assert_clean(codec)
    header = ctr.parse(res.data).header
    assert header.tile_pixels == 64 and header.effort == 2
    assert res.rd_after <= res.rd_before
    assert res.rd_after == pytest.approx(actual_cost(codec, img, res.data, 3.0), rel=1e-9)
    # 2 × 3 tiles of the 128×192 padded image, 4 SGA steps each, counted as one bar.
    latent_steps = [c[1:3] for c in calls if c[0] == "latents"]
    assert latent_steps == [(i, 24) for i in range(1, 25)]
    assert res.iterations == 24
    assert {"tiles", "adapters", "evaluate"} <= {c[0] for c in calls}
    assert {"none", "latents"} <= set(res.candidates)


# ---- RDOQ ------------------------------------------------------------------------------------


def test_rdoq_only_rounds_towards_zero_and_weighs_distortion(codec: Codec, image: LoadedImage) -> None:
    from udic.adapt import rdoq_latents

    y, z = codec.analyse(image.rgb, 2.0)
    _, means = codec._entropy_params(z)
    mu = means.numpy()
    r = np.rint(y - mu)
    lam = rd_lambda(codec, 2.0)
    mild, strict = (np.rint(v - mu) for v in rdoq_latents(codec, y, z, 2.0, lam, [1.0, 1e6]))
    changed = mild != r
    assert changed.any()
    assert np.array_equal(mild[changed], (r - np.sign(r))[changed])  # one step towards zero
    assert not (r[changed] == 0).any()
    assert np.array_equal(strict, r)  # distortion that expensive: change nothing
    free = np.rint(rdoq_latents(codec, y, z, 2.0, 0.0, [1.0])[0] - mu)
    # Distortion free: every residual whose smaller neighbour costs fewer bits shrinks.
    assert (np.abs(free) <= np.abs(r)).all() and (free != r).sum() > changed.sum()


def test_effort_one_is_rdoq_and_filter_and_never_worse(codec: Codec, image: LoadedImage) -> None:
    res = adapt_encode(codec, image, 3.0, AdaptConfig.for_effort(1))
    assert set(res.candidates) - {"none", "rdoq"} <= {"filter", "rdoq+filter"}
    assert res.iterations == 0 and res.adapter_iterations == 0
    assert res.rd_after <= res.rd_before
    assert res.rd_after == pytest.approx(actual_cost(codec, image, res.data, 3.0), rel=1e-9)
    assert ctr.parse(res.data).header.effort == 1


def test_symbol_bits_match_the_total(codec: Codec, image: LoadedImage) -> None:
    y, z = codec.analyse(image.rgb, 2.0)
    indexes, means = codec._entropy_params(z)
    r = np.rint(y - means.numpy()).astype(np.int64)
    r.flat[0] = 10_000  # one escape
    per = codec.y_coder.symbol_bits(r, indexes)
    assert per.shape == r.shape and (per > 0).all()
    assert per.sum() == pytest.approx(codec.y_coder.bits(r, indexes), rel=1e-9, abs=2.0)


def test_loop_filter_kept_when_it_pays(codec: Codec, image: LoadedImage) -> None:
    # No network passes: RDOQ, then the least-squares filter on the best candidate's pixels.
    res = adapt_encode(codec, image, 3.0, AdaptConfig.for_effort(1))
    [filtered] = [n for n in res.candidates if n.endswith("filter")]
    assert res.candidates[filtered] < min(v for n, v in res.candidates.items() if n != filtered)
    assert res.chosen == filtered
    assert ctr.parse(res.data).header.flags & ctr.Flags.LOOP_FILTER
    assert res.rd_after == pytest.approx(actual_cost(codec, image, res.data, 3.0), rel=1e-9)


def test_effort_0_sends_no_filter(codec: Codec, image: LoadedImage) -> None:
    res = adapt_encode(codec, image, 3.0, AdaptConfig.for_effort(0))
    assert res.chosen == "none" and not ctr.parse(res.data).header.flags & ctr.Flags.LOOP_FILTER


def test_loop_filter_classes_kept_when_they_pay() -> None:
    """Flat areas brightened, busy ones darkened: an activity split pays for its bytes; where
    every pixel wants the same correction it does not, and the plain filter stays."""
    from udic import loopfilter
    from udic.adapt import _class_split

    rng = np.random.default_rng(12)
    decoded = np.full((96, 128, 3), 120, np.uint8)
    decoded[:, 64:] = rng.integers(0, 256, (96, 64, 3))
    bands = loopfilter.sample_bands(96, 128)
    pixels, lam = 96 * 128, 0.01
    splits = AdaptConfig.for_effort(1).filter_classes
    for shift_busy, want_classes in ((-6, True), (6, False)):
        original = decoded.astype(int)
        original[:, :64] += 6
        original[:, 64:] += shift_busy
        original = np.clip(original, 0, 255).astype(np.uint8)
        normal = loopfilter.normal_equations(original, decoded, 5)
        plain = loopfilter.fit(normal, 1, 8)
        sse, n = loopfilter.squared_error(original, decoded, plain, bands)
        cost = (8 * len(loopfilter.encode(plain)) + 16) / pixels + lam * sse / (3 * n)
        chosen_cost, chosen = _class_split(original, decoded, (cost, plain), lam, pixels, bands, splits, normal)
        assert (chosen.classes > 1) == want_classes
        assert chosen_cost <= cost


@pytest.mark.parametrize("tile", [0, 64])
def test_encoder_psnr_is_the_decoded_files(tiny_codec: Codec, tile: int) -> None:
    """An adapted encode knows its file's PSNR without decoding it (the encoder reconstructs
    exactly as a decoder does); it is the PSNR of the decoded file, to the last bit."""
    from udic import api

    image = loaded(smooth_image(72, 136, seed=5))
    result = api.encode_with(tiny_codec, image, 2.0, effort=1, tile=tile, choose_mode=False, reduce=False)
    assert result.psnr is not None
    assert result.psnr == api._learned_psnr(tiny_codec, image, result.data)


def test_gray_sources_measure_psnr_on_the_decoded_file(tiny_codec: Codec) -> None:
    """A gray file decodes to one channel: its PSNR is measured, not taken from the RGB synthesis."""
    from udic import api

    image = loaded(smooth_image(40, 56, seed=6, channels=1))
    assert image.mode == "L"
    result = api.encode_with(tiny_codec, image, 2.0, effort=1, choose_mode=False, reduce=False)
    assert result.psnr is None


def test_gray_sources_are_judged_on_the_luma_the_decoder_writes() -> None:
    """Colour error in the synthesis never reaches a gray file: the adaptation's distortion is
    the decoded L's (Pillow's conversion, exactly), not the RGB's against the repeated gray."""
    from PIL import Image

    from udic.adapt import decoded_mse

    rng = np.random.default_rng(5)
    gray = loaded(smooth_image(20, 24, seed=2, channels=1))
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    luma = np.asarray(Image.fromarray(rgb).convert("L")).astype(np.float64)
    assert decoded_mse(gray, rgb) == pytest.approx(float(np.mean((luma - gray.rgb[..., 0]) ** 2)), abs=1e-12)
    colour = loaded(rgb)
    assert decoded_mse(colour, rgb) == 0.0


def _recorded_budgets(monkeypatch) -> list[float | None]:  # noqa: ANN001
    """The time budget each adapted encode is given, from now on (``adapt_encode`` spied on)."""
    from udic import adapt

    budgets: list[float | None] = []
    real = adapt.adapt_encode

    def recording(codec, image, quality, config, progress=None, tile=None):  # noqa: ANN001, ANN202
        budgets.append(config.time_budget)
        return real(codec, image, quality, config, progress, tile)

    monkeypatch.setattr(adapt, "adapt_encode", recording)
    return budgets


def test_the_time_budget_covers_the_whole_image(tiny_codec: Codec, monkeypatch) -> None:
    """A PSNR search makes several adapted encodes: they share one --time-budget, each getting
    what the ones before it left (each had been given the whole budget)."""
    from udic import api
    from udic.ratecontrol import RateTarget

    budgets = _recorded_budgets(monkeypatch)
    image = loaded(smooth_image(48, 64, seed=1))
    api.encode_with(tiny_codec, image, 2.0, effort=3, time_budget=0.5, target=RateTarget("psnr", 30.0))
    # The search's plain probes came first and spent some of it; each later encode gets less.
    assert budgets and budgets[0] < 0.5
    assert all(later <= earlier for earlier, later in zip(budgets, budgets[1:]))  # (0.0 once spent)
    assert all(b < 0.5 for b in budgets)
    budgets.clear()
    api.encode_with(tiny_codec, image, 2.0, effort=1, target=RateTarget("psnr", 30.0))
    assert budgets and all(b is None for b in budgets)  # no budget: none imposed


def test_the_loop_filter_starts_only_where_the_budget_has_room(codec: Codec, image: LoadedImage,
                                                               monkeypatch) -> None:
    from udic import adapt

    calls = []
    real = adapt._fit_loop_filter
    monkeypatch.setattr(adapt, "_fit_loop_filter", lambda *a, **k: calls.append(1) or real(*a, **k))
    adapt_encode(codec, image, 3.0, AdaptConfig.for_effort(1, time_budget=60.0))
    assert calls == [1]
    monkeypatch.setattr(adapt, "FILTER_COST_OF_EVALUATION", 1e9)  # "the filter would take ages"
    res = adapt_encode(codec, image, 3.0, AdaptConfig.for_effort(1, time_budget=60.0))
    assert calls == [1] and "filter" not in res.chosen
    adapt_encode(codec, image, 3.0, AdaptConfig.for_effort(1))  # no budget: always tried
    assert calls == [1, 1]


def test_any_integer_seed_is_accepted(codec: Codec, image: LoadedImage) -> None:
    for seed in (2**64 - 1, 2**64, -(2**70)):
        res = adapt_encode(codec, image, 3.0, AdaptConfig.for_effort(3, seed=seed, **QUICK))
        assert codec.decode(res.data).image.size == (64, 48)


def test_a_cuda_encode_asks_for_deterministic_kernels_and_restores_the_flags() -> None:
    """(No GPU here: the flags alone.)  SGA's and the adapter fit's backward passes on CUDA use
    cuDNN's deterministic kernels, so that --seed fixes a GPU encode too."""
    from udic.adapt import _deterministic_cuda

    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark)
    cudnn.benchmark = True
    try:
        with _deterministic_cuda(torch.device("cuda")):
            assert cudnn.deterministic and not cudnn.benchmark
        assert cudnn.benchmark and cudnn.deterministic == before[0]
        with _deterministic_cuda(torch.device("cpu")):
            assert cudnn.benchmark  # untouched on the CPU
    finally:
        cudnn.deterministic, cudnn.benchmark = before


def test_a_quality_past_the_top_rate_shares_the_budget_too(tiny_codec: Codec, monkeypatch) -> None:
    """-q above the network's top rate goes to the high-fidelity check directly (not through
    encode_with): its searches' adapted encodes share the budget as well."""
    from udic import api

    budgets = _recorded_budgets(monkeypatch)
    monkeypatch.setattr(api, "fidelity_may_beat", lambda *a: True)
    image = loaded(smooth_image(48, 64, seed=1))
    pixels = api.encode_pixels(image, 4)
    api.fidelity_for_pixels(pixels, lambda: tiny_codec, image, tiny_codec.max_quality + 1, 1, time_budget=0.5)
    assert budgets and all(b is not None and b < 0.5 for b in budgets)


def test_overlapping_cuda_users_keep_the_flags_until_the_last_leaves() -> None:
    """Two parallel workers: the first to leave must not turn deterministic kernels off under the other."""
    from udic.codec import deterministic_cuda

    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = False, True
    try:
        first, second = deterministic_cuda(), deterministic_cuda()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert cudnn.deterministic and not cudnn.benchmark
        second.__exit__(None, None, None)
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = before
