"""``GDN`` and ``EntropyBottleneck`` without importing compressai.

Why: ``import compressai`` costs several seconds (it pulls in torch_geometric and its
point-cloud datasets), more than torch itself, and the inference path uses only these
two layers.  They are re-implemented here with compressai's parameter and buffer
names, so state dicts and weights files load unchanged and outputs are bit-identical
(``tests/test_nn.py`` checks this against compressai, which stays the reference).

Left out on purpose: compressai's own range coder (``compress``/``decompress``) — udic
codes with its own tables (``models.factorized_pmf_table``) and its own coder.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GDN", "EntropyBottleneck", "LowerBound", "NonNegativeParametrizer", "pmf_to_quantized_cdf"]


class _LowerBoundFunction(torch.autograd.Function):
    """max(x, bound) whose gradient passes where it pushes x back above the bound."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        x, bound = ctx.saved_tensors
        pass_through = (x >= bound) | (grad_output < 0)
        return pass_through * grad_output, None


class LowerBound(nn.Module):
    """compressai.ops.LowerBound: the bound is a buffer (``bound``), so it is in state dicts."""

    bound: Tensor

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))

    def forward(self, x: Tensor) -> Tensor:
        return _LowerBoundFunction.apply(x, self.bound)


class NonNegativeParametrizer(nn.Module):
    """compressai.ops.NonNegativeParametrizer: stores sqrt(x + pedestal), returns it squared."""

    pedestal: Tensor

    def __init__(self, minimum: float = 0, reparam_offset: float = 2**-18) -> None:
        super().__init__()
        self.minimum = float(minimum)
        self.reparam_offset = float(reparam_offset)
        pedestal = self.reparam_offset**2
        self.register_buffer("pedestal", torch.tensor([pedestal]))
        bound = (self.minimum + self.reparam_offset**2) ** 0.5
        self.lower_bound = LowerBound(bound)

    def init(self, x: Tensor) -> Tensor:
        return torch.sqrt(torch.max(x + self.pedestal, self.pedestal))

    def forward(self, x: Tensor) -> Tensor:
        out = self.lower_bound(x)
        return out**2 - self.pedestal


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016): x / sqrt(β + Σ γ x²), or × for the inverse."""

    def __init__(self, in_channels: int, inverse: bool = False, beta_min: float = 1e-6,
                 gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = bool(inverse)
        self.beta_reparam = NonNegativeParametrizer(minimum=float(beta_min))
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(in_channels)))
        self.gamma_reparam = NonNegativeParametrizer()
        self.gamma = nn.Parameter(self.gamma_reparam.init(float(gamma_init) * torch.eye(in_channels)))

    def forward(self, x: Tensor) -> Tensor:
        C = x.size(1)
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma).reshape(C, C, 1, 1)
        norm = F.conv2d(x**2, gamma, beta)
        norm = torch.sqrt(norm) if self.inverse else torch.rsqrt(norm)
        return x * norm


def pmf_to_quantized_cdf(pmf: list[float], precision: int = 16) -> list[int]:
    """compressai's C++ ``pmf_to_quantized_cdf`` (from ryg_rans), integer for integer.

    Every symbol keeps a frequency ≥ 1, stolen from the smallest frequency above 1.
    The probabilities are float32, as in the C++ (``std::vector<float>``).
    """
    one = 1 << precision
    scaled = np.asarray(pmf, dtype=np.float32) * np.float32(one)  # exact: a power of two
    freqs = [0] + [int(math.floor(float(p) + 0.5)) & 0xFFFFFFFF for p in scaled]  # std::round, as uint32
    total = sum(freqs) & 0xFFFFFFFF  # a uint32 in the C++
    if total == 0:
        raise ValueError("cannot quantize an all-zero pmf")
    cdf = [((one * f) // total) & 0xFFFFFFFF for f in freqs]
    for i in range(1, len(cdf)):
        cdf[i] = (cdf[i] + cdf[i - 1]) & 0xFFFFFFFF
    cdf[-1] = one
    n = len(cdf)
    for i in range(n - 1):
        if cdf[i] == cdf[i + 1]:
            best_freq, best_steal = 0xFFFFFFFF, -1
            for j in range(n - 1):
                freq = (cdf[j + 1] - cdf[j]) & 0xFFFFFFFF
                if 1 < freq < best_freq:
                    best_freq, best_steal = freq, j
            if best_steal == -1:
                raise ValueError("cannot quantize this pmf: no frequency to steal")
            if best_steal < i:
                for j in range(best_steal + 1, i + 1):
                    cdf[j] -= 1
            else:
                for j in range(i + 1, best_steal + 1):
                    cdf[j] += 1
    return cdf


class EntropyBottleneck(nn.Module):
    """Factorized density of the hyper-latents (Ballé et al. 2018), as compressai implements it.

    Same parameters (``matrices``, ``biases``, ``factors``, ``quantiles``), buffers
    (``target``, ``likelihood_lower_bound.bound``, ``_offset``, ``_quantized_cdf``,
    ``_cdf_length``) and methods udic uses: ``forward``, ``_likelihood``,
    ``_logits_cumulative``, ``_get_medians``, ``loss`` and ``update``.
    """

    _offset: Tensor
    _quantized_cdf: Tensor
    _cdf_length: Tensor

    def __init__(self, channels: int, *, tail_mass: float = 1e-9, init_scale: float = 10,
                 filters: tuple[int, ...] = (3, 3, 3, 3), likelihood_bound: float = 1e-9,
                 entropy_coder_precision: int = 16) -> None:
        super().__init__()
        self.entropy_coder_precision = int(entropy_coder_precision)
        self.use_likelihood_bound = likelihood_bound > 0
        if self.use_likelihood_bound:
            self.likelihood_lower_bound = LowerBound(likelihood_bound)
        self.register_buffer("_offset", torch.IntTensor())
        self.register_buffer("_quantized_cdf", torch.IntTensor())
        self.register_buffer("_cdf_length", torch.IntTensor())

        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        self.tail_mass = float(tail_mass)
        dims = (1,) + self.filters + (1,)
        scale = self.init_scale ** (1 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(self.filters) + 1):
            init = np.log(np.expm1(1 / scale / dims[i + 1]))
            matrix = torch.Tensor(self.channels, dims[i + 1], dims[i])
            matrix.data.fill_(init)
            self.matrices.append(nn.Parameter(matrix))
            bias = torch.Tensor(self.channels, dims[i + 1], 1)
            nn.init.uniform_(bias, -0.5, 0.5)
            self.biases.append(nn.Parameter(bias))
            if i < len(self.filters):
                factor = torch.Tensor(self.channels, dims[i + 1], 1)
                nn.init.zeros_(factor)
                self.factors.append(nn.Parameter(factor))
        self.quantiles = nn.Parameter(torch.Tensor([-self.init_scale, 0, self.init_scale]).repeat(self.channels, 1, 1))
        target = np.log(2 / self.tail_mass - 1)
        self.register_buffer("target", torch.Tensor([-target, 0, target]))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # The CDF buffers change size on update(); take the incoming size, as compressai's
        # CompressionModel.load_state_dict does for its bottlenecks.
        for name in ("_offset", "_quantized_cdf", "_cdf_length"):
            incoming = state_dict.get(prefix + name)
            if incoming is not None:
                setattr(self, name, torch.zeros_like(incoming, dtype=torch.int32, device=self.quantiles.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _get_medians(self) -> Tensor:
        return self.quantiles[:, :, 1:2]

    def _logits_cumulative(self, inputs: Tensor, stop_gradient: bool) -> Tensor:
        logits = inputs
        for i in range(len(self.filters) + 1):
            matrix = self.matrices[i].detach() if stop_gradient else self.matrices[i]
            logits = torch.matmul(F.softplus(matrix), logits)
            bias = self.biases[i].detach() if stop_gradient else self.biases[i]
            logits = logits + bias
            if i < len(self.filters):
                factor = self.factors[i].detach() if stop_gradient else self.factors[i]
                logits = logits + torch.tanh(factor) * torch.tanh(logits)
        return logits

    def _likelihood(self, inputs: Tensor, stop_gradient: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        lower = self._logits_cumulative(inputs - 0.5, stop_gradient=stop_gradient)
        upper = self._logits_cumulative(inputs + 0.5, stop_gradient=stop_gradient)
        return torch.sigmoid(upper) - torch.sigmoid(lower), lower, upper

    def loss(self) -> Tensor:
        """Auxiliary loss that moves ``quantiles`` to the tail-mass targets."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    def forward(self, x: Tensor, training: bool | None = None) -> tuple[Tensor, Tensor]:
        """(noisy or median-rounded values, likelihoods), both shaped like ``x`` (B, C, …)."""
        if training is None:
            training = self.training
        perm = (1, 0, *range(2, x.ndim))
        x = x.permute(*perm).contiguous()
        shape = x.size()
        values = x.reshape(x.size(0), 1, -1)
        if training:
            outputs = values + torch.empty_like(values).uniform_(-0.5, 0.5)
        else:
            medians = self._get_medians()
            outputs = torch.round(values - medians) + medians
        likelihood, _, _ = self._likelihood(outputs)
        if self.use_likelihood_bound:
            likelihood = self.likelihood_lower_bound(likelihood)
        outputs = outputs.reshape(shape).permute(*perm).contiguous()
        likelihood = likelihood.reshape(shape).permute(*perm).contiguous()
        return outputs, likelihood

    def update(self, force: bool = False) -> bool:
        """Fill ``_offset``/``_quantized_cdf``/``_cdf_length`` from the current density (16-bit CDFs)."""
        if self._offset.numel() > 0 and not force:
            return False
        with torch.no_grad():
            medians = self.quantiles[:, 0, 1]
            minima = torch.clamp(torch.ceil(medians - self.quantiles[:, 0, 0]).int(), min=0)
            maxima = torch.clamp(torch.ceil(self.quantiles[:, 0, 2] - medians).int(), min=0)
            self._offset = -minima
            pmf_start = medians - minima
            pmf_length = maxima + minima + 1
            max_length = int(pmf_length.max().item())
            samples = torch.arange(max_length, device=pmf_start.device)[None, :] + pmf_start[:, None, None]
            pmf, lower, upper = self._likelihood(samples, stop_gradient=True)
            pmf = pmf[:, 0, :]
            tail_mass = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
            cdf = torch.zeros((len(pmf_length), max_length + 2), dtype=torch.int32, device=pmf.device)
            for i, p in enumerate(pmf):
                prob = torch.cat((p[: pmf_length[i]], tail_mass[i]), dim=0)
                row = pmf_to_quantized_cdf(prob.tolist(), self.entropy_coder_precision)
                cdf[i, : len(row)] = torch.tensor(row, dtype=torch.int32)
            self._quantized_cdf = cdf
            self._cdf_length = pmf_length + 2
        return True
