"""The protocol's judgement of a drain session: does it count, and are the targets met.

A session counts when its A/A control's 95% interval contains 1.0 and lies
within 1 ± ``AA_TOLERANCE``. A target is met when the lower end of its ratio's
interval is at least ``MUST_RATIO``; the issue's musts and its goal are judged
the same way, and are listed in ``TARGETS``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

AA_TOLERANCE = 0.02
MUST_RATIO = 0.97
#: By (task, variant): the two musts and the goal.
TARGETS = {
    ("bench_noop", "metrics"): "must",
    ("bench_cpu", "all_on"): "must",
    ("bench_noop", "all_on"): "goal",
}
#: The A/A control of each drain suite.
CONTROLS = {"drain": "off_aa", "hammer": "metrics_aa"}


def ratio_interval(row: Mapping[str, object]) -> tuple[float, float]:
    """A row's 95% interval of the ratio against the baseline: (low, high)."""
    low, high = cast("Sequence[float]", row["ratio_ci95"])
    return low, high


def session_counts(rows: Sequence[Mapping[str, object]], control: str) -> bool | None:
    """Whether the A/A control's interval contains 1.0 within ``AA_TOLERANCE``; None without one."""
    for row in rows:
        if row["variant"] == control:
            low, high = ratio_interval(row)
            return 1 - AA_TOLERANCE <= low <= 1.0 <= high <= 1 + AA_TOLERANCE
    return None


def must_met(row: Mapping[str, object]) -> bool:
    return ratio_interval(row)[0] >= MUST_RATIO


def verdict(task: str, rows: Sequence[Mapping[str, Any]], control: str) -> dict[str, Any]:
    """Whether the session counts, and which of this task's targets are met."""
    targets = {
        row["variant"]: {"kind": kind, "met": must_met(row)}
        for row in rows
        if (kind := TARGETS.get((task, row["variant"])))
    }
    return {"session_counts": session_counts(rows, control), "targets": targets}


def print_verdict(task: str, result: Mapping[str, Any]) -> None:
    counts = result["session_counts"]
    if counts is not None:
        state = (
            "counts" if counts else f"does NOT count (A/A interval not within 1 ± {AA_TOLERANCE})"
        )
        print(f"{task}: session {state}")
    for variant, target in result["targets"].items():
        print(f"{task}: {variant} {target['kind']} {'met' if target['met'] else 'MISSED'}")
