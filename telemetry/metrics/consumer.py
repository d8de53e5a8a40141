"""What a worker consumes and how large its pool is, as they are now, not as they were at start.

``celery control add_consumer`` / ``cancel_consumer`` change the consumed queues,
and ``pool_grow`` / ``pool_shrink`` and ``--autoscale`` the pool. So:

* ``celery_worker_pool_processes`` and ``celery_worker_pool_max_processes`` are
  read from the pool (and its autoscaler) when ``/metrics`` is rendered;
* ``celery_worker_consumed_queue`` is brought up to date before each render and
  each depth poll (:meth:`ConsumerView.follow`): a cancelled queue loses its
  series, an added one gains it, and the depth poller polls it from its next poll.

Everything is read from another thread than the consumer's; each read copies
a list or an integer Celery keeps, and a read that races a change is retried
at the next render or poll.

The view is built when the worker starts and follows nothing until it is given
the consumer (:meth:`ConsumerView.ready`, at ``worker_ready``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from telemetry.broker import DIRECT_SUFFIX
from telemetry.messages import HEALTH_TASK
from telemetry.metrics.catalogue import WorkerMetrics

#: Attempts at reading Celery's active requests from another thread.
BUSY_READ_ATTEMPTS = 5


def busy_requests(active: Iterable[Any]) -> int:
    """Requests executing now, health checks aside, read from a scrape or probe thread.

    Celery's ``active_requests`` is a WeakSet the main process's thread changes
    on every start and finish. Iterating it while that thread adds or discards
    raises ``RuntimeError`` (set changed size); the read is then retried.
    """
    for _ in range(BUSY_READ_ATTEMPTS - 1):
        with contextlib.suppress(RuntimeError):
            return sum(1 for request in active if request.type != HEALTH_TASK)
    return sum(1 for request in active if request.type != HEALTH_TASK)


def consumed_queues(consumer: Any) -> frozenset[str]:
    """The queues the consumer takes from now, its direct queue aside."""
    task_consumer = getattr(consumer, "task_consumer", None)
    queues = list(getattr(task_consumer, "queues", None) or ())
    return frozenset(q.name for q in queues if not q.name.endswith(DIRECT_SUFFIX))


def pool_processes(consumer: Any) -> int:
    pool = getattr(getattr(consumer, "controller", None), "pool", None) or getattr(
        consumer, "pool", None
    )
    return int(getattr(pool, "num_processes", 0) or 0)


def pool_max_processes(consumer: Any) -> int:
    autoscaler = getattr(getattr(consumer, "controller", None), "autoscaler", None)
    if autoscaler is not None:
        return int(autoscaler.max_concurrency)
    return pool_processes(consumer)


class ConsumerView:
    """Keeps the consumed-queue series and the polled queues in step with the consumer."""

    def __init__(
        self,
        metrics: WorkerMetrics,
        declared: Iterable[str],
        poll: Callable[[Iterable[str]], None] | None,
    ) -> None:
        """``poll``: tells the depth poller which queues to poll (None without one)."""
        self.metrics = metrics
        self.declared = frozenset(declared)
        self.poll = poll
        self.consumer: Any = None
        self.consumed: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        metrics.worker_pool_processes.set_function(self.pool_processes)
        metrics.worker_pool_max_processes.set_function(self.pool_max_processes)

    def ready(self, consumer: Any) -> None:
        """Follow ``consumer`` from now on, starting at once."""
        self.consumer = consumer
        self.follow()

    def pool_processes(self) -> int:
        return pool_processes(self.consumer) if self.consumer is not None else 0

    def pool_max_processes(self) -> int:
        return pool_max_processes(self.consumer) if self.consumer is not None else 0

    def follow(self) -> frozenset[str]:
        """Bring the consumed-queue series and the polled queues up to date; the consumed queues."""
        with self._lock:
            if self.consumer is None:
                return self.consumed
            current = consumed_queues(self.consumer)
            gauge = self.metrics.worker_consumed_queue
            # Labelled by declared queues only, as every other series is.
            for queue in (current - self.consumed) & self.declared:
                gauge.labels(queue).set(1)
            for queue in (self.consumed - current) & self.declared:
                gauge.remove(queue)
            self.consumed = current
            if self.poll is not None:
                self.poll(self.declared | current)
            return current
