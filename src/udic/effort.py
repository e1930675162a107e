"""What each ``--effort`` level does (torch-free, so the CLI's help needs no model code)."""

from __future__ import annotations

MAX_EFFORT = 5
DEFAULT_EFFORT = 1  # RDOQ + loop filter: no network passes, a few seconds, never worse (the CLI's default too)

# effort → (latent iterations, latent lr, adapter steps, adapter lr, RDOQ).  Few passes
# with a high, exponentially decaying lr keep most of the gain of the long GPU
# schedules; RDOQ (no network passes) is the cheap first step.  Measured on CPU
# budgets (bench/sections/adaptation.md): 40 SGA steps beat 20 SGA + 20 adapter steps
# on every domain, because an adapter needs more steps than that to pay for its
# bits, so adapters start at effort 3.
PRESETS: dict[int, tuple[int, float, int, float, bool]] = {
    0: (0, 0.0, 0, 0.0, False),
    1: (0, 0.0, 0, 0.0, True),
    2: (40, 0.05, 0, 0.0, True),
    3: (100, 0.03, 40, 0.02, True),
    4: (300, 0.02, 100, 0.01, True),
    5: (1000, 0.01, 300, 0.005, True),
}


def describe_effort(effort: int) -> str:
    """One line on what an effort level does, for help texts and reports."""
    iterations, _, adapter_steps, _, rdoq = PRESETS[effort]
    parts = ([f"{iterations} SGA steps"] if iterations else []) + (["RDOQ"] if rdoq else []) + (
        [f"a {adapter_steps}-step rank-2 adapter"] if adapter_steps else []) + (["loop filter"] if effort >= 1 else [])
    return " + ".join(parts) if parts else "no adaptation"
