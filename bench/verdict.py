"""The protocol's judgement of a drain session: does it count, and are the musts met.

A session counts when its A/A control's 95% interval contains 1.0 and lies
within 1 ± ``AA_TOLERANCE``. Each must (``MUSTS``: issue 40's, 35's and 36's)
names the task and variant it judges, the statistic of that variant's ratio (its
median, or its interval's lower or upper end), the least that statistic may be,
and, where the issue caps it, the most the median CPU ratio may be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

AA_TOLERANCE = 0.02


@dataclass(frozen=True)
class Must:
    """A variant's ratio must reach ``least`` at ``statistic``: its median, or its interval's
    lower end, or its upper end (the interval includes ``least`` or more). It is judged in
    the suite whose A/A control is ``control``, where the ratio has its baseline."""

    statistic: Literal["lower_end", "median", "upper_end"]
    least: float
    control: str = "off_aa"
    #: The most the median CPU-per-task ratio against the baseline may be; None: any.
    cpu_most: float | None = None

    def met(self, row: Mapping[str, Any]) -> bool:
        low, high = ratio_interval(row)
        value = {"lower_end": low, "upper_end": high}.get(self.statistic, row["ratio_median"])
        cpu_held = self.cpu_most is None or float(row["cpu_ratio_median"]) <= self.cpu_most
        return float(value) >= self.least and cpu_held

    def judged(self, row: Mapping[str, Any]) -> dict[str, Any]:
        target = {"statistic": self.statistic, "least": self.least, "met": self.met(row)}
        if self.cpu_most is not None:
            target["cpu_most"] = self.cpu_most
        return target


#: By (task, variant). Issue 40's three ("tracing at the cost of metrics"; its
#: metrics must only asks that metrics did not get worse), and issue 35's: OTLP
#: metrics against none.
MUSTS = {
    ("bench_noop", "all_on"): Must("median", 0.95, cpu_most=1.10),
    ("bench_cpu", "all_on"): Must("median", 0.96, cpu_most=1.05),
    ("bench_noop", "metrics"): Must("upper_end", 0.969),
    ("bench_noop", "metrics_otlp"): Must("upper_end", 0.99, "metrics_sdk_aa"),
    ("bench_cpu", "metrics_otlp"): Must("upper_end", 0.99, "metrics_sdk_aa"),
    # Reliable fetch costs at most 2% of no-op throughput: in the fetch suite, whose
    # baseline is today's fetch (kombu's BRPOP), off's interval includes 0.98 or more.
    ("bench_noop", "off"): Must("upper_end", 0.98, "off_stockfetch_aa"),
}
#: The A/A control of each drain suite.
CONTROLS = {
    "drain": "off_aa",
    "hammer": "metrics_aa",
    "otlp": "metrics_sdk_aa",
    "fetch": "off_stockfetch_aa",
}


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
        row["variant"]: must.judged(row)
        for row in rows
        if (must := MUSTS.get((task, row["variant"]))) and must.control == control
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
        cpu = f", CPU ratio <= {target['cpu_most']}" if "cpu_most" in target else ""
        print(f"{task}: {variant} must ({target['statistic']} >= {target['least']}{cpu}) {state}")
