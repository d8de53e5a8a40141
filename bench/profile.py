"""Where "everything on" spends its CPU: a py-spy profile of a worker draining no-op tasks.

One ``all_on`` drain of N no-op tasks runs while ``py-spy record --nonblocking``
samples the main process, each pool process and the span export process (one
recorder per process). Each sample's stack is attributed to an area by the
frames it holds:

* ``tracing``: any frame from the OpenTelemetry SDK or its OTLP exporter, or
  from ``telemetry/tracing/`` (spans, the export hop, client spans);
* ``metrics``: any frame from ``prometheus_client`` or the rest of ``telemetry/``;
* ``celery``: everything else (Celery, kombu, billiard, redis-py, the task).

py-spy leaves out idle threads (waiting in ``select``, on a lock, ...), so the
shares are of busy CPU. The busiest leaf functions of the telemetry areas are
listed too. The same summary is kept per role (``main``, ``child`` for the pool
processes together, ``export``), with the role's busy CPU per task: its samples
over the sampling rate, over N.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.drain import Drainer, Variant, child_pids, role

TASK = "bench_noop"
SAMPLE_RATE = 250
#: py-spy names files relative to their sys.path entry, and shortens the SDK's
#: (``opentelemetry/sdk/trace/__init__.py`` shows as ``trace/__init__.py``).
TRACING_MODULES = (
    "opentelemetry", "trace/__init__.py", "trace/export", "_shared_internal", "trace_encoder",
    "trace_exporter", "telemetry/tracing/",
)  # fmt: skip
METRICS_MODULES = ("prometheus_client", "telemetry/")
FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:]+)(?::\d+)?\)$")


def area_of(frames: list[str]) -> str:
    if any(module in frame for frame in frames for module in TRACING_MODULES):
        return "tracing"
    if any(module in frame for frame in frames for module in METRICS_MODULES):
        return "metrics"
    return "celery"


def summarize(raw: str, top: int = 12) -> dict[str, Any]:
    """Shares of busy samples per area, and the busiest telemetry leaf functions."""
    areas: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        area = area_of(frames)
        areas[area] += int(count)
        if area != "celery":
            match = FRAME.match(frames[-1])
            leaf = (
                frames[-1] if match is None else f"{match['function']} ({Path(match['file']).name})"
            )
            leaves[f"{area}: {leaf}"] += int(count)
    busy = sum(areas.values()) or 1
    return {
        "busy_samples": sum(areas.values()),
        "share": {area: round(areas[area] / busy, 4) for area in ("celery", "metrics", "tracing")},
        "top_telemetry_leaves": [
            {"leaf": leaf, "share": round(n / busy, 4)} for leaf, n in leaves.most_common(top)
        ],
    }


def measure(drainer: Drainer, variant: Variant, n: int) -> dict[str, Any]:
    py_spy = shutil.which("py-spy") or str(Path(__file__).resolve().parents[1] / ".venv/bin/py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("profile: py-spy is not installed (pip install py-spy)")
    workdir = Path(tempfile.mkdtemp(prefix="jobpilot-profile-"))
    recorders: list[subprocess.Popen[bytes]] = []
    roles: dict[int, str] = {}

    def start_recording(_done: int, pid: int) -> None:
        """One recorder per process: the main, pool and export processes."""
        if recorders:
            return
        roles.update({pid: "main"} | {child: role(child) for child in child_pids(pid)})
        for target in roles:
            recorders.append(
                subprocess.Popen(
                    [py_spy, "record", "--pid", str(target), "--nonblocking", "--rate", str(SAMPLE_RATE),
                     "--format", "raw", "--output", str(workdir / f"{target}.txt")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip

    run = drainer.run(variant, TASK, n, on_progress=start_recording)
    for recorder in recorders:
        recorder.wait(30)  # py-spy writes its file once its process has exited
    raws = {pid: (workdir / f"{pid}.txt").read_text() for pid in roles}
    by_role = {
        name: "\n".join(raws[pid] for pid in roles if roles[pid] == name)
        for name in sorted(set(roles.values()))
    }
    per_role = {}
    for name, raw in by_role.items():
        summary = summarize(raw, top=6)
        summary["busy_cpu_us_per_task"] = round(summary["busy_samples"] / SAMPLE_RATE / n * 1e6, 1)
        per_role[name] = summary
    return {
        "variant": variant.name,
        "tasks": n,
        "tasks_per_second": round(run.rate, 1),
        "processes_sampled": len(recorders),
        "roles": per_role,
    } | summarize("\n".join(raws.values()))


def print_table(figures: dict[str, Any]) -> None:
    share = figures["share"]
    print(
        f"profile, {figures['variant']}, {figures['tasks']:,} no-op tasks: busy CPU "
        f"celery {share['celery']:.1%}, metrics {share['metrics']:.1%}, tracing {share['tracing']:.1%}"
    )
    for row in figures["top_telemetry_leaves"]:
        print(f"  {row['share']:>6.1%}  {row['leaf']}")
    for name, summary in figures["roles"].items():
        share = summary["share"]
        print(
            f"  {name}: {summary['busy_cpu_us_per_task']:.0f} busy CPU-us per task; celery "
            f"{share['celery']:.1%}, metrics {share['metrics']:.1%}, tracing {share['tracing']:.1%}"
        )
