"""Building blocks: LoRA-capable convolutions and the per-image adapter slot.

Every convolution in udic's networks can carry one low-rank delta per rate.
A delta is ``B @ A`` (rank r) reshaped to the weight's shape and scaled by
``alpha / r``. Merging writes ``W + delta`` into the weight so that a merged
rate costs exactly what the base costs; unmerging restores a saved copy of the
base weight, so merge/unmerge round trips are bit-exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRADelta(nn.Module):
    """One rate's low-rank delta for a weight of shape (d0, d1, k, k)."""

    def __init__(self, weight_shape: torch.Size, rank: int, alpha: float) -> None:
        super().__init__()
        rows = weight_shape[0]
        cols = int(math.prod(weight_shape[1:]))
        self.rank = rank
        self.alpha = float(alpha)
        # B starts at zero so a fresh delta leaves the base untouched.
        self.A = nn.Parameter(torch.empty(rank, cols))
        self.B = nn.Parameter(torch.zeros(rows, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self._shape = tuple(weight_shape)

    def delta(self) -> torch.Tensor:
        return (self.B @ self.A).view(self._shape) * (self.alpha / self.rank)

    @torch.no_grad()
    def delta_float64(self) -> torch.Tensor:
        """The delta as Σ_k B[:,k]⊗A[k,:]·α/r in float64, in a fixed order.

        Elementwise float64 operations are exactly reproducible on the CPU, unlike a
        matmul whose blocking depends on the BLAS build and thread count, so merged
        weights are bit-identical in every process.
        """
        A = self.A.detach().to("cpu", torch.float64)
        B = self.B.detach().to("cpu", torch.float64)
        acc = torch.zeros(B.shape[0], A.shape[1], dtype=torch.float64)
        for k in range(self.rank):
            acc += torch.outer(B[:, k], A[k, :])
        return (acc * (self.alpha / self.rank)).view(self._shape)


class _LoRAMixin:
    """Shared LoRA bookkeeping for Conv2d and ConvTranspose2d."""

    weight: nn.Parameter
    lora: nn.ModuleDict

    def _init_lora(self) -> None:
        self.lora = nn.ModuleDict()
        self.active_rate: str | None = None
        self._merged_rate: str | None = None
        self._base_weight: torch.Tensor | None = None

    def add_lora(self, rate: str, rank: int, alpha: float | None = None) -> LoRADelta:
        delta = LoRADelta(self.weight.shape, rank, alpha if alpha is not None else rank)
        delta.to(self.weight.device)
        self.lora[rate] = delta
        return delta

    def effective_weight(self) -> torch.Tensor:
        if self.active_rate is not None and self._merged_rate is None and self.active_rate in self.lora:
            return self.weight + self.lora[self.active_rate].delta().to(self.weight.dtype)
        return self.weight

    @torch.no_grad()
    def merged_weight_float64(self, mix: dict[str, float]) -> torch.Tensor:
        """Base weight + Σ t·delta over ``mix`` = {rate key: t}, in float64 on the CPU.

        Rates without a delta in this layer contribute zero (the base rate has none).
        """
        base = self._base_weight if self._base_weight is not None else self.weight
        w = base.detach().to("cpu", torch.float64).clone()
        for key, t in mix.items():
            if t != 0.0 and key in self.lora:
                w += self.lora[key].delta_float64() * t
        return w

    @torch.no_grad()
    def merge_mix(self, mix: dict[str, float]) -> None:
        """Fold the weighted sum of deltas into the weight (no-op if none applies)."""
        self.unmerge()
        if not any(t != 0.0 and key in self.lora for key, t in mix.items()):
            return
        merged = self.merged_weight_float64(mix)
        self._base_weight = self.weight.detach().clone()
        self.weight.copy_(merged.to(self.weight.device, self.weight.dtype))
        self._merged_rate = "+".join(f"{t:g}*{k}" for k, t in sorted(mix.items()))

    def merge(self, rate: str) -> None:
        """Fold ``rate``'s delta into the weight (no-op if this layer has none)."""
        self.merge_mix({rate: 1.0})

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact base weight."""
        if self._merged_rate is not None and self._base_weight is not None:
            self.weight.copy_(self._base_weight)
        self._merged_rate = None
        self._base_weight = None


class LoRAConv2d(nn.Conv2d, _LoRAMixin):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_lora()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class LoRAConvTranspose2d(nn.ConvTranspose2d, _LoRAMixin):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_lora()

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        return F.conv_transpose2d(
            x,
            self.effective_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> LoRAConv2d:
    return LoRAConv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> LoRAConvTranspose2d:
    return LoRAConvTranspose2d(
        cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


def lora_layers(module: nn.Module) -> list[_LoRAMixin]:
    return [m for m in module.modules() if isinstance(m, _LoRAMixin)]


class AdapterSlot(nn.Module):
    """Residual low-rank adapter r(h) = A·Bᵀ·h, off (identity) until weights are set.

    Per-image adapters are optimised at encode time and sent in the file; the
    slot keeps the network shape fixed whether or not they are present.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.down: torch.Tensor | None = None  # (rank, C): Bᵀ
        self.up: torch.Tensor | None = None  # (C, rank): A

    @property
    def enabled(self) -> bool:
        return self.down is not None and self.up is not None

    def set(self, down: torch.Tensor | None, up: torch.Tensor | None) -> None:
        self.down, self.up = down, up

    def clear(self) -> None:
        self.down = self.up = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return h
        assert self.down is not None and self.up is not None
        down = self.down.to(h.dtype)
        up = self.up.to(h.dtype)
        t = torch.einsum("rc,nchw->nrhw", down, h)
        return h + torch.einsum("cr,nrhw->nchw", up, t)
