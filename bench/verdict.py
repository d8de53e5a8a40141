"""The protocol's judgement of a drain session: does it count, and are the musts met.

A session counts when its A/A control's 95% interval contains 1.0 and lies
within 1 ± ``AA_TOLERANCE``. Each must (``MUSTS``) names the task and variant
it judges, the statistic of that variant's ratio (its median or its interval's
lower end) and the least that statistic may be (issue 21), or the most (issue
36: the ``fetch`` suite's ratio is today's fetch against reliable fetch's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

AA_TOLERANCE = 0.02


@dataclass(frozen=True)
class Must:
    """A variant's ratio at ``statistic`` (its median or its interval's lower end) must
    reach ``least``, or stay at ``most``."""

    statistic: Literal["lower_end", "median"]
    least: float | None = None
    most: float | None = None

    def met(self, row: Mapping[str, Any]) -> bool:
        value = ratio_interval(row)[0] if self.statistic == "lower_end" else row["ratio_median"]
        if self.least is not None and float(value) < self.least:
            return False
        return self.most is None or float(value) <= self.most

    def describe(self) -> dict[str, Any]:
        bound = {"least": self.least} if self.least is not None else {"most": self.most}
        return {"statistic": self.statistic, **bound}


#: By (task, variant).
MUSTS = {
    ("bench_noop", "metrics"): Must("lower_end", least=0.97),
    ("bench_cpu", "all_on"): Must("median", least=0.94),
    # Reliable fetch costs at most 2%: the interval of off / off_stockfetch includes 0.98
    # or more, that is, this ratio's interval includes 1 / 0.98 or less.
    ("bench_noop", "off_stockfetch"): Must("lower_end", most=round(1 / 0.98, 4)),
}
#: The A/A control of each drain suite.
CONTROLS = {"drain": "off_aa", "hammer": "metrics_aa", "fetch": "off_aa"}


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


def verdict(task: str, rows: Sequence[Mapping[str, Any]], control: str) -> dict[str, Any]:
    """Whether the session counts, and whether this task's musts are met."""
    targets = {
        row["variant"]: {**must.describe(), "met": must.met(row)}
        for row in rows
        if (must := MUSTS.get((task, row["variant"])))
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
        state = "met" if target["met"] else "MISSED"
        bound = f">= {target['least']}" if "least" in target else f"<= {target['most']}"
        print(f"{task}: {variant} must ({target['statistic']} {bound}) {state}")
