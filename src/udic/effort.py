"""What each ``--effort`` level does: one named row per level (torch-free, so the CLI's
help needs no model code).  The help text (``describe_effort``) and the adaptation
(``adapt.AdaptConfig.for_effort``) both read these rows, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class EffortPreset:
    """How hard one effort level tries.

    Few passes with a high, exponentially decaying lr keep most of the gain of the long
    GPU schedules; RDOQ and the loop filter (no network passes) are the cheap first
    step.  Measured on CPU budgets (bench/sections/adaptation.md): 40 SGA steps beat
    20 SGA + 20 adapter steps on every domain, because an adapter needs more steps than
    that to pay for its bits, so adapters start at effort 3.  Fewer SGA steps keep too little
    (session 23, syn21, 4 Kodak, 2 comic and 2 vector images, qualities 0-5, BD-rate against
    effort 1): 10 / 20 / 40 steps give photos -0.3 / -1.8 / -5.5 %, comics -5.3 / -9.6 / -16 %,
    vector art -4.6 / -7.4 / -12 %, for 2.1 / 2.9 / 5.0x effort 1's learned-encode time.  A
    step is memory-bound elementwise work (GDN and its gradient at half resolution), not
    convolutions, so effort 1 stays the default and effort 2 keeps 40 steps.
    """

    sga_steps: int = 0  # latent-refinement iterations
    sga_lr: float = 0.0
    adapter_steps: int = 0  # rank-2 synthesis adapter optimisation steps
    adapter_lr: float = 0.0
    rdoq: bool = False  # rate-distortion optimised rounding of the latents
    loop_filter: bool = False  # fit and send a linear filter on the decoded pixels if it pays

    def describe(self) -> str:
        parts = ([f"{self.sga_steps} SGA steps"] if self.sga_steps else []) + (["RDOQ"] if self.rdoq else []) + (
            [f"a {self.adapter_steps}-step rank-2 adapter"] if self.adapter_steps else []) + (
            ["loop filter"] if self.loop_filter else [])
        return " + ".join(parts) if parts else "no adaptation"


# Loop filter and RDOQ from effort 1 on; SGA from 2; adapters from 3.
PRESETS: dict[int, EffortPreset] = {
    0: EffortPreset(),
    1: EffortPreset(rdoq=True, loop_filter=True),
    2: EffortPreset(sga_steps=40, sga_lr=0.05, rdoq=True, loop_filter=True),
    3: EffortPreset(sga_steps=100, sga_lr=0.03, adapter_steps=40, adapter_lr=0.02, rdoq=True, loop_filter=True),
    4: EffortPreset(sga_steps=300, sga_lr=0.02, adapter_steps=100, adapter_lr=0.01, rdoq=True, loop_filter=True),
    5: EffortPreset(sga_steps=1000, sga_lr=0.01, adapter_steps=300, adapter_lr=0.005, rdoq=True, loop_filter=True),
}
MAX_EFFORT = max(PRESETS)
DEFAULT_EFFORT = 1  # RDOQ + loop filter: no network passes, a few seconds, never worse (the CLI's default too)


def check_effort(effort: object) -> int:
    """``effort`` as a valid level, or a UsageError (the one range check)."""
    if isinstance(effort, bool) or not isinstance(effort, int) or effort not in PRESETS:
        raise UsageError(f"effort must be an integer 0…{MAX_EFFORT}, got {effort!r}")
    return effort


def preset(effort: int) -> EffortPreset:
    return PRESETS[check_effort(effort)]


def describe_effort(effort: int) -> str:
    """One line on what an effort level does, for help texts and reports."""
    return preset(effort).describe()
