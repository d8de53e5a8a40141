"""With the collector down, tasks run at full speed, memory stays flat and logs stay quiet."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from telemetry.log_throttle import LOG_INTERVAL_SECONDS
from telemetry.tracing.collector import UNREACHABLE_BACKOFF_SECONDS
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.tracing import traced_env
from tests.support.worker_process import WorkerProcess, free_port
from worker.celery_app import app

pytestmark = [pytest.mark.integration, pytest.mark.faults]

#: Tasks per drain. Each recycles a pool process, about 0.1 to 0.2 s here; a stall of
#: even a tenth of that per recycled process would show against the 1.2 bound.
TASKS = 100
#: Alternating drains per worker; the best of each is compared.
ROUNDS = 2
UP_QUEUE, DOWN_QUEUE = "briefings", "scraping"
EXPORT_FAILURE_LINE = "span export failed"


def drain_seconds(count: int, queue: str | None = None) -> float:
    """Publish ``count`` tasks (to ``queue``, else their routed queue) and wait for
    every result; the wall time taken."""
    started = time.monotonic()
    sent = [
        app.send_task("briefing_compile", args=["t", ["x"]], ignore_result=False, queue=queue)
        for _ in range(count)
    ]
    for result in sent:
        result.get(timeout=120)
    return time.monotonic() - started


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def refusing_endpoint() -> str:
    """An endpoint on a free port nothing listens on: every connection is refused."""
    return f"http://127.0.0.1:{free_port()}"


def test_a_refusing_collector_costs_recycled_pool_processes_at_most_a_fifth(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    recycling = ("--max-tasks-per-child", "1")
    # Given two recycling workers, one exporting to a collector that is up and one to
    # an endpoint that refuses connections, each consuming its own queue
    up_worker = start_worker(
        traced_env(worker_env, receiver), queues=UP_QUEUE, extra_args=recycling
    )
    env = {**traced_env(worker_env, receiver), "OTEL_EXPORTER_OTLP_ENDPOINT": refusing_endpoint()}
    down_worker = start_worker(env, queues=DOWN_QUEUE, extra_args=recycling)
    down_started = time.monotonic()
    drain_seconds(4, UP_QUEUE)
    drain_seconds(4, DOWN_QUEUE)
    # When each drains the same batch, in alternation (the machine's noise hits both alike)
    up, down = [], []
    for _ in range(ROUNDS):
        up.append(drain_seconds(TASKS, UP_QUEUE))
        down.append(drain_seconds(TASKS, DOWN_QUEUE))
    # Then the refused worker's best drain takes at most 1.2 times the other's
    print(f"collector up {up} s, refusing {down} s, ratio {min(down) / min(up):.2f}")
    assert min(down) <= 1.2 * min(up)
    assert len(receiver.named("run/briefing_compile")) >= ROUNDS * TASKS
    # And export failures were logged once a minute, not once per pool process;
    # the exporter's own lines come from one attempt per 30 s (by each of the two
    # pool processes, at worst) instead of one per recycled process
    lifetime = time.monotonic() - down_started
    assert (
        1
        <= down_worker.log().count(EXPORT_FAILURE_LINE)
        <= 1 + int(lifetime // LOG_INTERVAL_SECONDS)
    )
    attempts = 1 + int((lifetime + 10) // UNREACHABLE_BACKOFF_SECONDS)
    assert down_worker.log().count("opentelemetry.exporter") <= 2 * attempts
    assert up_worker.log().count(EXPORT_FAILURE_LINE) == 0


def test_memory_stays_flat_while_spans_cannot_be_exported(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    env = {
        **traced_env(worker_env, receiver),
        "OTEL_EXPORTER_OTLP_ENDPOINT": refusing_endpoint(),
    }
    worker = start_worker(env)
    # Warm up: every cache and buffer reaches its steady size
    drain_seconds(3000)
    before = {pid: rss_kib(pid) for pid in [worker.pid, *worker.child_pids()]}
    drain_seconds(2000)
    after = {pid: rss_kib(pid) for pid in before}
    growth = {pid: after[pid] - before[pid] for pid in before}
    print(f"RSS growth per process (KiB) over 2000 tasks: {growth}")
    assert all(kib <= 2048 for kib in growth.values()), growth
    assert worker.log().count(EXPORT_FAILURE_LINE) == 1
