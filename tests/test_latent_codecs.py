"""udic.latent_codecs: the seam (a second codec is one class), the default codec's
bytes, the channel-conditional codec, and the capacity bound a decoder checks before it
allocates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import loaded, psnr, smooth_image
from udic import container as ctr
from udic import modelfile
from udic.codec import Codec, codec_for_file
from udic.entropy import IndexedCoder, gaussian_tables
from udic.errors import ContainerError, ModelError
from udic.latent_codecs import (
    DEFAULT_LATENT_CODEC,
    EntropyParams,
    LatentCodec,
    LatentDecoding,
    LatentEncoding,
    crc_integers,
    latent_codec_class,
    register,
)
from udic.latent_codecs.base import min_bits_per_symbol, stream_can_hold
from udic.testing import build_tiny_model

# ---- a test double: a scale-only hyperprior, registered by name --------------------------------


@register
class ScaleOnlyHyperprior(LatentCodec):
    """Latents coded as round(y) under the Gaussian of their scale, ignoring the means:
    everything a latent codec needs, in one class (nothing else in udic changes)."""

    name = "test-scale-only"

    def __init__(self, *args, **kwargs) -> None:
        from udic.models import scale_table

        super().__init__(*args, **kwargs)
        self.y_coder = IndexedCoder(gaussian_tables(tuple(scale_table())))

    def min_latent_bits(self, y_shape):
        return 0.0  # the weakest sound bound

    def entropy_params(self, z_symbols, hyper, y=None) -> EntropyParams:
        from udic.models import scale_indexes

        fixed = hyper(torch.from_numpy(z_symbols)[None])[0]
        M = self.config.M
        return EntropyParams(scale_indexes(fixed[:M]), torch.zeros(fixed[M:].shape))

    def encode(self, y, z_symbols, hyper) -> LatentEncoding:
        params = self.entropy_params(z_symbols, hyper)
        values = np.rint(y).astype(np.int64)
        return LatentEncoding(self.encode_hyper(z_symbols), self.y_coder.encode(values, params.indexes),
                              crc_integers(values, z_symbols), torch.from_numpy(values.astype(np.float32)))

    def decode(self, z_bytes, y_bytes, z_shape, y_shape, hyper, crc) -> LatentDecoding:
        z_symbols = self.decode_hyper(z_bytes, z_shape)
        values = self.y_coder.decode(y_bytes, self.entropy_params(z_symbols, hyper).indexes).reshape(y_shape)
        if crc_integers(values, z_symbols) != crc:
            raise ContainerError("decoded latents fail their checksum")
        return LatentDecoding(z_symbols, values, torch.from_numpy(values.astype(np.float32)))

    def symbol_bits(self, residuals, params):
        return self.y_coder.symbol_bits(residuals, params.indexes)

    def relaxed_latents(self, y, params, quantise):
        from udic.models import LOG_SCALE_MAX, LOG_SCALE_MIN, gaussian_likelihood

        log_scale = params.chunk(2, dim=1)[0].clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
        y_hat = quantise(y)
        return -torch.log2(gaussian_likelihood(y_hat, log_scale.exp())), y_hat


@pytest.fixture(scope="module")
def scale_only_codec(tmp_path_factory: pytest.TempPathFactory) -> Codec:
    model = build_tiny_model(seed=0)
    model.config.latent_codec = ScaleOnlyHyperprior.name
    path = tmp_path_factory.mktemp("scale-only") / "scale-only.safetensors"
    modelfile.save(model, path)
    return codec_for_file(path)


def test_a_second_latent_codec_round_trips_through_codec(scale_only_codec: Codec, tiny_codec: Codec) -> None:
    assert isinstance(scale_only_codec.latent_codec, ScaleOnlyHyperprior)
    assert scale_only_codec.metadata["config"]["latent_codec"] == ScaleOnlyHyperprior.name
    img = smooth_image(40, 56, seed=11)
    enc = scale_only_codec.encode(loaded(img), 2.5)
    out = np.asarray(scale_only_codec.decode(enc.data).image)
    assert psnr(out, img) > 20
    # Its own latents section: the integers differ from the mean-scale hyperprior's.
    default = tiny_codec.encode(loaded(img), 2.5)
    assert ctr.parse(enc.data).sections[ctr.Section.LATENTS] != ctr.parse(default.data).sections[ctr.Section.LATENTS]


def test_adaptation_works_through_the_seam(scale_only_codec: Codec) -> None:
    """SGA and RDOQ use the seam's differentiable bits and symbol costs, never the hyperprior's."""
    from udic.adapt import AdaptConfig, adapt_encode

    img = loaded(smooth_image(40, 56, seed=12))
    res = adapt_encode(scale_only_codec, img, 2.0, AdaptConfig.for_effort(2, iterations=4, loop_filter=False))
    assert res.rd_after <= res.rd_before
    assert np.asarray(scale_only_codec.decode(res.data).image).shape == (40, 56, 3)


def test_default_codec_is_written_nowhere(tiny_model) -> None:
    """Weights files without the key use the mean-scale hyperprior, and exporting a model
    with the default does not add the key (existing ids and bytes stay)."""
    from safetensors import safe_open

    with safe_open(str(tiny_model.path), "pt") as f:
        assert "latent_codec" not in f.metadata()["config"]
    assert codec_for_file(tiny_model.path).latent_codec.name == DEFAULT_LATENT_CODEC


def test_unknown_latent_codec_is_a_model_error(tmp_path: Path) -> None:
    model = build_tiny_model(seed=0)
    model.config.latent_codec = "no-such-codec"
    modelfile.save(model, tmp_path / "w.safetensors")
    with pytest.raises(ModelError, match="no-such-codec"):
        codec_for_file(tmp_path / "w.safetensors")
    with pytest.raises(ModelError):
        latent_codec_class("no-such-codec")


def test_a_name_is_registered_once() -> None:
    class Clash(ScaleOnlyHyperprior):
        name = ScaleOnlyHyperprior.name

    with pytest.raises(ValueError, match="already registered"):
        register(Clash)


# ---- the capacity bound ------------------------------------------------------------------------


def _tables_under_test(codec: Codec):
    return list(codec.latent_codec.z_coder.tables) + list(codec.latent_codec.y_coder.tables)


def test_capacity_bound_never_refuses_a_real_stream(tiny_codec: Codec) -> None:
    """The bound is sound: streams of the likeliest symbol (the cheapest possible) and of
    random symbols, under every table, always fit what their bytes are said to hold."""
    rng = np.random.default_rng(0)
    for table in _tables_under_test(tiny_codec):
        coder = IndexedCoder([table])
        likeliest = int(np.argmax(table.pmf[:-1])) + table.offset
        p = table.pmf[:-1] / table.pmf[:-1].sum()
        for values in (np.full(20000, likeliest), rng.choice(table.size, 3000, p=p) + table.offset):
            payload = coder.encode(values, np.zeros_like(values))
            assert stream_can_hold(payload, len(values) * min_bits_per_symbol(table)), table.offset


def test_capacity_bound_is_tight_enough_to_matter(tiny_codec: Codec) -> None:
    """Tens of bits per hyper-latent position: a tiny file cannot claim a huge image."""
    per_position = sum(min_bits_per_symbol(t) for t in tiny_codec.latent_codec.z_coder.tables)
    assert per_position > 1.0
    assert not stream_can_hold(b"\0" * 8, 125 * 125 * per_position)


# ---- the channel-conditional codec (spec §5.3) -------------------------------------------------


@pytest.fixture(scope="module")
def channel_codec(tmp_path_factory: pytest.TempPathFactory) -> Codec:
    path = tmp_path_factory.mktemp("channel") / "channel.safetensors"
    modelfile.save(build_tiny_model(seed=0, channel_context=True), path)
    return codec_for_file(path)


def _transplanted_channel_model():
    """The tiny hyperprior's weights in a channel-context model whose nets are still at
    their zero-output initialisation (what a warm start from a hyperprior begins with)."""
    import dataclasses

    from udic.models import CHANNEL_CONTEXT_CODEC, UdicModel

    hyperprior = build_tiny_model(seed=0)
    model = UdicModel(dataclasses.replace(hyperprior.config, latent_codec=CHANNEL_CONTEXT_CODEC, slices=()))
    for layer in (model.g_a.res[2], model.g_s.stages[0][0], model.h_s[2]):
        layer.add_lora("r2", rank=2, alpha=2.0)
    missing, unexpected = model.load_state_dict(hyperprior.state_dict(), strict=False)
    assert not unexpected and all(m.startswith("context.") for m in missing)
    model.entropy_bottleneck.update(force=True)
    return model.eval()


def test_channel_codec_round_trips_exactly_in_version_6(channel_codec: Codec) -> None:
    from udic.latent_codecs import ChannelContextCodec

    assert isinstance(channel_codec.latent_codec, ChannelContextCodec)
    assert channel_codec.config.slices == (1, 1, 2, 4, 4)
    img = smooth_image(72, 100, seed=3)
    for quality in (0.0, 2.5, 5.0):
        enc = channel_codec.encode(loaded(img), quality, keep_latents=True)
        assert ctr.parse(enc.data).header.version == ctr.CHANNEL_CONTEXT_VERSION
        dec = channel_codec.decode(enc.data)
        assert psnr(np.asarray(dec.image), img) > 20
        cont = ctr.parse(enc.data)
        out = channel_codec.latent_codec.decode(
            cont.section(ctr.Section.HYPERLATENTS), cont.section(ctr.Section.LATENTS),
            (channel_codec.config.N, 2, 2), (channel_codec.config.M, 8, 8), channel_codec.hyper, cont.header.latent_crc)
        assert torch.equal(out.y_hat, enc.y_hat)  # the decoder sees exactly the encoder's latents


def test_channel_context_changes_the_parameters(channel_codec: Codec) -> None:
    """Slice k ≥ 1's parameters depend on the latents before it, slice 0's do not."""
    img = smooth_image(72, 100, seed=4)
    channel_codec.select(channel_codec.rate(3.0))
    y, z = channel_codec.analyse(img, 3.0)
    base = channel_codec.entropy_params(z, y)
    moved = y.copy()
    moved[0] += 3.0  # slice 0 = channel 0
    other = channel_codec.entropy_params(z, moved)
    assert np.array_equal(base.indexes[:1], other.indexes[:1])
    assert not (np.array_equal(base.indexes[1:], other.indexes[1:]) and torch.equal(base.means[1:], other.means[1:]))
    with pytest.raises(ValueError, match="pass y"):
        channel_codec.entropy_params(z)


def test_channel_codec_at_zero_init_codes_the_hyperprior_integers(tmp_path: Path, tiny_codec: Codec) -> None:
    """A context model warm-started from a hyperprior codes the same integers (same CRC) until
    training moves its nets; only the symbol order of the latents section differs (slices)."""
    path = tmp_path / "transplant.safetensors"
    modelfile.save(_transplanted_channel_model(), path)
    transplant = codec_for_file(path)
    img = smooth_image(72, 100, seed=5)
    for quality in (0.0, 2.0, 3.3):
        a = ctr.parse(transplant.encode(loaded(img), quality).data)
        b = ctr.parse(tiny_codec.encode(loaded(img), quality).data)
        assert a.header.latent_crc == b.header.latent_crc
        assert a.section(ctr.Section.HYPERLATENTS) == b.section(ctr.Section.HYPERLATENTS)
        assert abs(len(a.section(ctr.Section.LATENTS)) - len(b.section(ctr.Section.LATENTS))) <= 16


def test_channel_codec_integers_do_not_depend_on_threads(channel_codec: Codec) -> None:
    img = smooth_image(72, 100, seed=6)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = channel_codec.encode(loaded(img), 2.0).data
        torch.set_num_threads(2)
        two = channel_codec.encode(loaded(img), 2.0).data
    finally:
        torch.set_num_threads(before)
    assert one == two


def test_channel_codec_refuses_damaged_latents(channel_codec: Codec) -> None:
    data = bytearray(channel_codec.encode(loaded(smooth_image(72, 100, seed=7)), 4.0).data)
    cont = ctr.parse(bytes(data))
    latents = cont.section(ctr.Section.LATENTS)
    start = bytes(data).index(latents)
    for offset in (0, len(latents) // 2, len(latents) - 4):
        damaged = bytearray(data)
        damaged[start + offset] ^= 0x5A
        with pytest.raises(ContainerError):
            channel_codec.decode(bytes(damaged))


def test_adaptation_works_with_the_channel_codec(channel_codec: Codec) -> None:
    """SGA runs through the context nets' relaxed estimate; RDOQ through their exact parameters."""
    from udic.adapt import AdaptConfig, adapt_encode

    img = loaded(smooth_image(40, 56, seed=12))
    res = adapt_encode(channel_codec, img, 2.0, AdaptConfig.for_effort(2, iterations=4, loop_filter=False))
    assert res.rd_after <= res.rd_before
    assert np.asarray(channel_codec.decode(res.data).image).shape == (40, 56, 3)


def test_channel_context_nets_start_at_zero() -> None:
    from udic.models import CHANNEL_CONTEXT_CODEC, ModelConfig, UdicModel

    model = UdicModel(ModelConfig(N=8, M=32, latent_codec=CHANNEL_CONTEXT_CODEC))
    assert model.config.slices == (2, 2, 4, 8, 16)
    assert ModelConfig.from_dict(model.config.to_dict()) == model.config
    params = torch.randn(1, 64, 3, 4)
    y = torch.randn(1, 32, 3, 4)
    log_scales, means, y_hat = model.context.run(y, params, lambda v, k: torch.round(v))
    assert torch.equal(torch.cat(log_scales, 1), params[:, :32]) and torch.equal(torch.cat(means, 1), params[:, 32:])
    with pytest.raises(ValueError, match="add up"):
        ModelConfig(N=8, M=32, latent_codec=CHANNEL_CONTEXT_CODEC, slices=(4, 4))


def test_a_channel_context_file_below_its_version_is_refused(channel_codec: Codec) -> None:
    """§4: channel-conditional latents come in files of version 6 or later; the same bytes
    labelled version 4 are refused before any decoding."""
    from dataclasses import replace

    enc = channel_codec.encode(loaded(smooth_image(24, 24, seed=1)), 2.0)
    cont = ctr.parse(enc.data)
    relabelled = ctr.write(ctr.Container(header=replace(cont.header, version=4), sections=cont.sections))
    with pytest.raises(ctr.ContainerError, match="version-4 file cannot hold"):
        channel_codec.decode(relabelled)
