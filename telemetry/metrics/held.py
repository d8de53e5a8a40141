"""What a worker holds and nobody's queue depth shows: ETA tasks waiting, and executions in progress.

    held = HeldRequests(scheduled_requests(lambda: worker), worker_state.active_requests)
    metrics = WorkerMetrics(registry, held=held)

Read at render time (a scrape, at most once per ``METRICS_RENDER_INTERVAL``),
never per task. Celery keeps requests scheduled for an ETA and requests
executing in two ``WeakSet``s that the consumer's thread changes on every
delivery; iterating one while it changes raises ``RuntimeError`` (set changed
size), so a read is retried a few times before giving up for this render.
Health checks are left out, as everywhere in the task metrics; a request is
placed in its queue by the series the recorder found for it.

Celery 5.7 keeps the requests waiting for their ETA in
``celery.worker.state.scheduled_requests``; Celery 5.6 keeps no such set, and
they are read from the worker's timer queue instead, as its ``inspect
scheduled`` does (:class:`TimerScheduled`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from celery.worker import state as worker_state
from celery.worker.request import Request

from telemetry.metrics.task_series import HeldReading

logger = logging.getLogger("telemetry.metrics")

#: Attempts at copying a set the consumer's thread may be changing.
READ_ATTEMPTS = 5


def snapshot(requests: Iterable[Any]) -> list[Any]:
    """A copy of a set another thread changes; empty if it kept changing."""
    for _ in range(READ_ATTEMPTS):
        try:
            return list(requests)
        except RuntimeError:
            continue
    return []


def scheduled_requests(worker: Callable[[], Any]) -> Iterable[Any]:
    """The worker's requests waiting for their ETA: Celery's own set (5.7), else its
    timer's; ``worker`` returns Celery's worker once it has started (None before)."""
    scheduled: Iterable[Any] | None = getattr(worker_state, "scheduled_requests", None)
    return scheduled if scheduled is not None else TimerScheduled(worker)


class TimerScheduled:
    """Celery 5.6: the requests entered in the worker's timer to run at their ETA.

    Read at each iteration, since the timer exists only once the worker's
    components have started, after ``worker_init``; its ``queue`` is a copy.
    """

    def __init__(self, worker: Callable[[], Any]) -> None:
        self.worker = worker

    def __iter__(self) -> Iterator[Any]:
        timer = getattr(self.worker(), "timer", None)
        if timer is None:
            return
        for waiting in timer.schedule.queue:
            args = getattr(waiting.entry, "args", None) or ()
            if args and isinstance(args[0], Request):
                yield args[0]


class HeldRequests:
    """Per queue: requests whose ETA is in the future, and the oldest execution's age."""

    def __init__(
        self,
        scheduled: Iterable[Any],
        active: Iterable[Any],
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduled = scheduled
        self.active = active
        self.wall_clock = wall_clock
        self.clock = clock

    def __call__(self) -> HeldReading:
        now = self.wall_clock()
        waiting: dict[str, int] = {}
        for request in snapshot(self.scheduled):
            series = getattr(request, "metrics_series", None)
            eta = getattr(request, "eta", None)
            if series is not None and eta is not None and eta.timestamp() > now:
                waiting[series.queue] = waiting.get(series.queue, 0) + 1
        monotonic_now = self.clock()
        oldest: dict[str, float] = {}
        for request in snapshot(self.active):
            series = getattr(request, "metrics_series", None)
            started_at = getattr(request, "started_at", None)
            if series is not None and started_at is not None:
                age = monotonic_now - started_at
                if age > oldest.get(series.queue, 0.0):
                    oldest[series.queue] = age
        return HeldReading(waiting, oldest)
