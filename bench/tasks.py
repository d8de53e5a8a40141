"""Tasks the benchmark drains (``celery worker --include bench.tasks``)."""

from __future__ import annotations

import time

from worker.celery_app import app

#: About 1 ms of CPU on this project's reference machine.
CPU_TASK_SECONDS = 0.001


@app.task(name="bench_noop")
def bench_noop() -> None:
    """Does nothing: the cost measured is the worker's own."""


@app.task(name="bench_cpu")
def bench_cpu() -> None:
    """Spins the CPU for CPU_TASK_SECONDS of process time."""
    end = time.process_time() + CPU_TASK_SECONDS
    while time.process_time() < end:
        pass
