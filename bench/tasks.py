"""Tasks the benchmark drains (``celery worker --include bench.tasks``).

Imported by every benchmark worker before its consumer, pool and event loop
exist, so it also shifts the worker's heap by a random amount
(``BENCH_HEAP_SHIFT``, a seed the harness draws per worker and round): see
:func:`shift_heap`.
"""

from __future__ import annotations

import os
import random
import time

from worker.celery_app import app

#: About 1 ms of CPU on this project's reference machine.
CPU_TASK_SECONDS = 0.001
#: The harness's seed for this worker's heap shift; unset, the heap is left alone.
HEAP_SHIFT_VARIABLE = "BENCH_HEAP_SHIFT"
#: At most this many small objects, each of at most SHIFT_OBJECT_BYTES.
SHIFT_OBJECTS = 512
SHIFT_OBJECT_BYTES = 480


def shift_heap(seed: str | None) -> list[bytes]:
    """Small objects of random number and sizes, to be kept alive: everything the
    worker allocates after them lands at other addresses. Why a session needs
    that: ``bench.sliced`` ("Why shifting heaps").

    This runs at import, against the rule that importing does next to nothing,
    because it must come before the worker builds its consumer, pool and event
    loop, and ``--include`` modules are imported before any of them exists.
    """
    if not seed:
        return []
    rng = random.Random(seed)
    return [bytes(rng.randrange(SHIFT_OBJECT_BYTES)) for _ in range(rng.randrange(SHIFT_OBJECTS))]


_SHIFT = shift_heap(os.environ.get(HEAP_SHIFT_VARIABLE))


@app.task(name="bench_noop")
def bench_noop() -> None:
    """Does nothing: the cost measured is the worker's own."""


@app.task(name="bench_cpu")
def bench_cpu() -> None:
    """Spins the CPU for CPU_TASK_SECONDS of process time."""
    end = time.process_time() + CPU_TASK_SECONDS
    while time.process_time() < end:
        pass
