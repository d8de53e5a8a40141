"""The drain suite's judgement of a session: the A/A control and the must threshold."""

from __future__ import annotations

import pytest

from bench.verdict import must_met, session_counts


def row(variant: str, low: float, high: float) -> dict[str, object]:
    return {"variant": variant, "ratio_ci95": [low, high]}


@pytest.mark.parametrize(
    ("low", "high", "counts"),
    [
        (0.985, 1.012, True),
        (0.98, 1.02, True),
        (0.973, 1.031, False),  # contains 1.0 but wider than ±0.02
        (1.001, 1.015, False),  # narrow but misses 1.0
        (0.95, 0.99, False),
    ],
)
def test_session_counts_only_when_the_control_interval_is_narrow_and_holds_one(
    low: float, high: float, counts: bool
) -> None:
    rows = [row("off", 1.0, 1.0), row("off_aa", low, high)]
    assert session_counts(rows, "off_aa") is counts


def test_session_without_its_control_is_not_judged() -> None:
    assert session_counts([row("off", 1.0, 1.0)], "off_aa") is None


@pytest.mark.parametrize(("low", "met"), [(0.97, True), (0.9699, False), (1.01, True)])
def test_a_must_is_met_by_the_lower_end_of_its_interval(low: float, met: bool) -> None:
    assert must_met(row("all_on", low, 1.05)) is met
