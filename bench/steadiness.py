"""How steady the machine's CPUs are, measured just before and just after a drain session.

A drain's ratios are only as precise as the CPUs are steady. On a VM whose virtual
CPUs change speed from one second to the next (a busy neighbour on the same
physical core), one run catches more slow seconds than the next, and no pairing
cancels that. The VM exposes no hardware counters, so speed is timed directly:
a fixed pure-Python loop, pinned to each CPU in turn, ``samples`` times per CPU.

``spread`` is the slowest CPU's 90th-percentile loop time over its 10th. A steady
machine keeps it within ``STEADY_SPREAD``; the project's VM has shown 1.04 on a
quiet night and 1.7 on a busy morning.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

#: About 50 ms on the project's VM at its fast speed.
LOOP_ITERATIONS = 1_000_000
#: p90/p10 of the loop time above which a session is unlikely to count.
STEADY_SPREAD = 1.10


def loop_seconds(iterations: int = LOOP_ITERATIONS) -> float:
    """Wall time of a fixed CPU-bound loop."""
    started = time.perf_counter()
    total = 0
    for i in range(iterations):
        total += i
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(samples: int = 20, iterations: int = LOOP_ITERATIONS) -> dict[str, Any]:
    """Times the loop ``samples`` times on each CPU this process may use, CPUs alternating."""
    cpus = sorted(os.sched_getaffinity(0))
    times: dict[int, list[float]] = {cpu: [] for cpu in cpus}
    try:
        for _ in range(samples):
            for cpu in cpus:
                os.sched_setaffinity(0, {cpu})
                times[cpu].append(loop_seconds(iterations))
    finally:
        os.sched_setaffinity(0, cpus)
    return summarize(times)


def summarize(times: dict[int, list[float]]) -> dict[str, Any]:
    """Per CPU: the loop's median, p10 and p90 in ms; overall: the worst spread, and whether it is steady."""
    per_cpu = [
        {
            "cpu": cpu,
            "median_ms": statistics.median(values) * 1e3,
            "p10_ms": percentile(values, 0.1) * 1e3,
            "p90_ms": percentile(values, 0.9) * 1e3,
        }
        for cpu, values in sorted(times.items())
    ]
    spread = max(row["p90_ms"] / row["p10_ms"] for row in per_cpu)
    return {
        "samples": min(len(values) for values in times.values()),
        "cpus": per_cpu,
        "spread": spread,
        "steady": spread <= STEADY_SPREAD,
    }


def describe(result: dict[str, Any]) -> str:
    medians = ", ".join(f"cpu{row['cpu']} {row['median_ms']:.0f} ms" for row in result["cpus"])
    state = "steady" if result["steady"] else f"UNSTEADY (over {STEADY_SPREAD})"
    return f"CPU speed: loop {medians}; p90/p10 {result['spread']:.2f}, {state}"
