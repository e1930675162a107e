"""The effort table: what each level runs, and the description users see."""

from __future__ import annotations

from udic.effort import DEFAULT_EFFORT, MAX_EFFORT, PRESETS, describe_effort


def test_every_level_has_a_preset_and_more_effort_never_does_less() -> None:
    assert sorted(PRESETS) == list(range(MAX_EFFORT + 1))
    assert 0 <= DEFAULT_EFFORT <= MAX_EFFORT
    passes = [PRESETS[e][0] + PRESETS[e][2] for e in range(MAX_EFFORT + 1)]
    assert passes == sorted(passes)


def test_descriptions_name_the_steps() -> None:
    assert describe_effort(0) == "no adaptation"
    assert describe_effort(1) == "RDOQ + loop filter"
    iterations, _, adapter_steps, _, _ = PRESETS[MAX_EFFORT]
    assert describe_effort(MAX_EFFORT) == (f"{iterations} SGA steps + RDOQ + a {adapter_steps}-step rank-2 adapter"
                                           " + loop filter")
