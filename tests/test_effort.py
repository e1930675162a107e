"""The effort table: what each level runs, and the description users see."""

from __future__ import annotations

import pytest

from udic.effort import DEFAULT_EFFORT, MAX_EFFORT, PRESETS, EffortPreset, check_effort, describe_effort, preset
from udic.errors import UsageError


def test_every_level_has_a_preset_and_more_effort_never_does_less() -> None:
    assert sorted(PRESETS) == list(range(MAX_EFFORT + 1))
    assert 0 <= DEFAULT_EFFORT <= MAX_EFFORT
    passes = [PRESETS[e].sga_steps + PRESETS[e].adapter_steps for e in range(MAX_EFFORT + 1)]
    assert passes == sorted(passes)
    # Once a cheap step is on it stays on at every higher effort.
    for name in ("rdoq", "loop_filter"):
        flags = [getattr(PRESETS[e], name) for e in range(MAX_EFFORT + 1)]
        assert flags == sorted(flags), name


def test_descriptions_name_the_steps() -> None:
    assert describe_effort(0) == "no adaptation"
    assert describe_effort(1) == "RDOQ + loop filter"
    top = PRESETS[MAX_EFFORT]
    assert describe_effort(MAX_EFFORT) == (f"{top.sga_steps} SGA steps + RDOQ + a {top.adapter_steps}-step rank-2 adapter"
                                           " + loop filter")


def test_description_follows_the_row() -> None:
    """The help text is read from the row, not written beside it."""
    assert EffortPreset(loop_filter=True).describe() == "loop filter"
    assert EffortPreset(sga_steps=7, rdoq=True).describe() == "7 SGA steps + RDOQ"


@pytest.mark.parametrize("bad", [-1, MAX_EFFORT + 1, 1.0, True, "2", None])
def test_effort_checked_once(bad: object) -> None:
    with pytest.raises(UsageError, match="effort"):
        check_effort(bad)
    with pytest.raises(UsageError):
        preset(bad)  # type: ignore[arg-type]


def test_adaptation_reads_the_same_rows() -> None:
    from udic.adapt import AdaptConfig

    for e in range(MAX_EFFORT + 1):
        cfg, row = AdaptConfig.for_effort(e), PRESETS[e]
        assert (cfg.iterations, cfg.lr, cfg.adapter_steps, cfg.adapter_lr, cfg.rdoq, cfg.loop_filter) == (
            row.sga_steps, row.sga_lr, row.adapter_steps, row.adapter_lr, row.rdoq, row.loop_filter)
