"""Task metrics recorded in the worker's main process, from Celery's request lifecycle.

Why the main process: every delivery passes through it (received, accepted by
the pool, finished), including the ones a pool process never reports: a hard
time limit, a revocation, a lost or recycled pool process. Recording there
keeps the counts exact under prefork without prometheus-client's multiprocess
mode, which drops exemplars; one in-memory registry serves ``/metrics``.

Runtime is measured here too, from the pool's "accepted" callback to the
outcome, for every outcome that ran (the pool hands back a runtime only for
successes). It therefore includes the pool's result hand-off, typically well
under a millisecond.

Labelled children are cached per (queue, task), the per-queue gauges included,
so a delivery costs dict lookups and a few increments: no ``labels()`` call
after the first delivery of a pair. A delivery finds its series once, at its
first callback, and keeps it on the request. Health-check deliveries are left out:
readiness measures them. Handlers never raise into Celery: a failure is logged,
once a minute at most, and skipped.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from telemetry.catalogue import OUTCOMES, WorkerMetrics
from worker.lifecycle import FAILED, REJECTED

logger = logging.getLogger("telemetry.lifecycle")

PUBLISHED_AT_HEADER = "x-jobpilot-published-at"
TRACEPARENT_HEADER = "traceparent"
TRACEPARENT_LENGTH = 55
INVALID_TRACE_ID = "0" * 32
HEALTH_TASK = "health_check_task"
OTHER_QUEUE = "other"
UNKNOWN_TASK = "unknown"
ERROR_LOG_INTERVAL_SECONDS = 60.0

F = TypeVar("F", bound=Callable[..., None])


def guarded(method: F) -> F:
    """Telemetry never breaks a task: log (rate-limited) and skip on its own failure."""

    @functools.wraps(method)
    def wrapper(self: DeliveryRecorder, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as exc:
            now = time.monotonic()
            if now - self._last_error_log >= ERROR_LOG_INTERVAL_SECONDS:
                self._last_error_log = now
                logger.warning("task metrics skipped an event: %s: %s", type(exc).__name__, exc)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class TaskSeries:
    received: Any
    started: Any
    finished: dict[str, Any]
    runtime: Any
    queue_wait: Any
    #: The queue's gauges, shared by every task of the queue.
    reserved: Any
    active: Any


class DeliveryRecorder:
    """A ``worker.lifecycle.DeliveryObserver`` writing the task metrics of the contract."""

    def __init__(
        self, metrics: WorkerMetrics, queues: Iterable[str], is_registered: Callable[[str], bool]
    ) -> None:
        self.metrics = metrics
        self.queues = frozenset(queues)
        self.is_registered = is_registered
        self._series: dict[tuple[str, str], TaskSeries] = {}
        self._last_error_log = float("-inf")

    def queue_label(self, queue: str | None) -> str:
        return queue if queue in self.queues else OTHER_QUEUE

    def task_label(self, task: str | None) -> str:
        return task if task and self.is_registered(task) else UNKNOWN_TASK

    def series(self, queue: str, task: str) -> TaskSeries:
        key = (queue, task)
        found = self._series.get(key)
        if found is None:
            m = self.metrics
            found = self._series[key] = TaskSeries(
                received=m.task_received.labels(queue, task),
                started=m.task_started.labels(queue, task),
                finished={
                    outcome: m.task_finished.labels(queue, task, outcome) for outcome in OUTCOMES
                },
                runtime=m.task_runtime.labels(queue, task),
                queue_wait=m.task_queue_wait.labels(queue, task),
                reserved=m.tasks_reserved.labels(queue),
                active=m.tasks_active.labels(queue),
            )
        return found

    def prime(self, tasks: Iterable[str], route: Callable[[str], str]) -> None:
        """Start at zero: every (registered task x routed queue) and every queue's depth."""
        for task in tasks:
            if not task.startswith("celery.") and task != HEALTH_TASK:
                self.series(self.queue_label(route(task)), task)
        for queue in self.queues:
            self.metrics.queue_depth.labels(queue).set(0)
            self.metrics.tasks_active.labels(queue)
            self.metrics.tasks_reserved.labels(queue)

    def _series_of(self, request: Any) -> TaskSeries:
        """The delivery's series, looked up once and kept on the request."""
        series: TaskSeries | None = getattr(request, "_jp_series", None)
        if series is None:
            series = request._jp_series = self.series(*self._labels(request))
        return series

    def _labels(self, request: Any) -> tuple[str, str]:
        labels: tuple[str, str] | None = getattr(request, "_jp_labels", None)
        if labels is None:
            info = request.delivery_info or {}
            labels = (self.queue_label(info.get("routing_key")), self.task_label(request.type))
            request._jp_labels = labels
        return labels

    @staticmethod
    def _exemplar(request: Any) -> dict[str, str] | None:
        """The delivery's exemplar, parsed once and kept on the request."""
        if not hasattr(request, "_jp_exemplar"):
            request._jp_exemplar = trace_exemplar(request)
        exemplar: dict[str, str] | None = request._jp_exemplar
        return exemplar

    @guarded
    def on_received(self, request: Any) -> None:
        if request.type != HEALTH_TASK:
            self._receive(request)

    def _receive(self, request: Any) -> TaskSeries:
        """Counts the receipt once per delivery, whichever callback comes first."""
        series = self._series_of(request)
        if not getattr(request, "_jp_received", False):
            request._jp_received = True
            series.received.inc()
            series.reserved.inc()
        return series

    @guarded
    def on_started(self, request: Any) -> None:
        if request.type == HEALTH_TASK:
            return
        series = self._receive(request)
        request._jp_started_at = time.monotonic()
        series.started.inc()
        series.reserved.dec()
        series.active.inc()
        wait = queue_wait_seconds(request)
        if wait is not None:
            series.queue_wait.observe(wait, self._exemplar(request))

    @guarded
    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        if request.type == HEALTH_TASK:
            return
        series = self._receive(request)  # revoked at receipt: Celery sends no task_received
        started_at = getattr(request, "_jp_started_at", None)
        if started_at is None:
            series.reserved.dec()
        else:
            series.active.dec()
            series.runtime.observe(time.monotonic() - started_at, self._exemplar(request))
        series.finished[outcome].inc()
        if outcome == FAILED and exception is not None:
            queue, task = self._labels(request)
            self.metrics.task_exceptions.labels(queue, task, type(exception).__name__).inc()

    @guarded
    def on_dead_lettered(self, queue: str, task: str | None, reason: str, refused: bool) -> None:
        queue_label = self.queue_label(queue)
        self.metrics.messages_dead_lettered.labels(queue_label, reason).inc()
        if refused:
            series = self.series(queue_label, self.task_label(task))
            series.received.inc()
            series.finished[REJECTED].inc()


def trace_exemplar(request: Any) -> dict[str, str] | None:
    """``{"trace_id": ...}`` from the message's W3C ``traceparent``, if it is sampled.

    Parsed directly (``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``):
    no OpenTelemetry call on the hot path, and it works with export disabled.
    """
    parent = (request.request_dict or {}).get(TRACEPARENT_HEADER)
    if not isinstance(parent, str) or len(parent) != TRACEPARENT_LENGTH:
        return None
    trace_id, flags = parent[3:35], parent[53:55]
    try:
        sampled = int(flags, 16) & 1
        int(trace_id, 16)
    except ValueError:
        return None
    if not sampled or trace_id == INVALID_TRACE_ID:
        return None
    return {"trace_id": trace_id.lower()}


def queue_wait_seconds(request: Any) -> float | None:
    """Start time minus publish time minus the ETA delay; None without our header."""
    headers = request.request_dict or {}
    published_at = headers.get(PUBLISHED_AT_HEADER)
    started = request.time_start
    if not isinstance(published_at, int | float) or started is None:
        return None
    delay = 0.0
    if request.eta is not None:
        delay = max(0.0, request.eta.timestamp() - published_at)
    wait: float = max(0.0, started - published_at - delay)
    return wait
