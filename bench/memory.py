"""Memory over a long drain: RSS of each process of a worker at N/2 and at N.

One worker with everything on (metrics, readiness, tracing exported to a
discarding endpoint) and ``worker_max_tasks_per_child`` unset drains N no-op
tasks (100,000 by default). RSS (``VmRSS`` from ``/proc/<pid>/status``) is read
from the main process, every pool process and the span export process as the count of finished tasks
crosses N/2 and again at N. A process holds when its growth between the two is
within 2% of its RSS at N/2, or 2 MiB, whichever is larger. The same pool
processes must serve the whole drain, or the comparison would mean nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.drain import Drainer, Variant, child_pids, role

MIB = 1024 * 1024
ALLOWED_FRACTION = 0.02
ALLOWED_BYTES = 2 * MIB
TASK = "bench_noop"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def tree_rss(pid: int) -> dict[str, int]:
    """RSS by process: ``main``, ``child-<pid>`` for each pool process, ``export-<pid>``."""
    return {"main": rss_bytes(pid), **{f"{role(c)}-{c}": rss_bytes(c) for c in child_pids(pid)}}


def measure(drainer: Drainer, variant: Variant, n: int) -> dict[str, Any]:
    marks = (n // 2, n)
    samples: dict[int, dict[str, int]] = {}

    def sample(done: int, pid: int) -> None:
        for mark in marks:
            if done >= mark and mark not in samples:
                samples[mark] = tree_rss(pid)

    run = drainer.run(variant, TASK, n, on_progress=sample)
    half, full = samples[marks[0]], samples[marks[1]]
    if set(half) != set(full):
        raise RuntimeError(
            f"pool processes changed during the drain: {sorted(half)} -> {sorted(full)}"
        )
    processes = []
    for name in sorted(half):
        growth = full[name] - half[name]
        allowed = max(ALLOWED_FRACTION * half[name], ALLOWED_BYTES)
        processes.append(
            {
                "process": name.partition("-")[0],
                "rss_half_mib": round(half[name] / MIB, 2),
                "rss_full_mib": round(full[name] / MIB, 2),
                "growth_mib": round(growth / MIB, 2),
                "allowed_mib": round(allowed / MIB, 2),
                "holds": growth <= allowed,
            }
        )
    return {
        "variant": variant.name,
        "tasks": n,
        "half": marks[0],
        "tasks_per_second": round(run.rate, 1),
        "processes": processes,
        "holds": all(p["holds"] for p in processes),
    }


def print_table(figures: dict[str, Any]) -> None:
    print(
        f"memory, {figures['variant']}: RSS at {figures['half']:,} and {figures['tasks']:,} tasks"
    )
    print(f"{'process':<9}{'MiB @half':>10}{'MiB @N':>9}{'growth':>9}{'allowed':>9}  holds")
    for row in figures["processes"]:
        print(
            f"{row['process']:<9}{row['rss_half_mib']:>10.1f}{row['rss_full_mib']:>9.1f}"
            f"{row['growth_mib']:>9.2f}{row['allowed_mib']:>9.2f}  {row['holds']}"
        )
