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

A delivery finds its (queue, task) series once, at its first callback, and keeps
it on the request (``TelemetryRequest.metrics_series``); the series are plain numbers (``telemetry.metrics.task_series``), so
the later callbacks are attribute increments. Health-check deliveries are left
out: readiness measures them. Handlers never raise into Celery: a failure is
logged, once a minute at most, and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from telemetry.delivery.observers import FAILED, REJECTED, DeliveryObserver
from telemetry.log_throttle import LogThrottle
from telemetry.messages import HEALTH_TASK, PUBLISHED_AT_HEADER, REQUEUE_HEADER
from telemetry.metrics.at_least_once import EtaTrap, StartedWindow
from telemetry.metrics.catalogue import RUNTIME_BUCKETS, WorkerMetrics
from telemetry.metrics.failed_runtimes import FailedRuntimes, error_type
from telemetry.metrics.task_series import TaskSeries

logger = logging.getLogger("telemetry.metrics")

OTHER_QUEUE = "other"
UNKNOWN_TASK = "unknown"

#: Distinct (routing key, task name) pairs remembered for the series lookup; past
#: it, new pairs are looked up by label each time (never seen in practice).
MAX_DELIVERY_KEYS = 10_000


class DeliveryRecorder(DeliveryObserver):
    """The delivery observer writing the task metrics of the contract.

    The three callbacks run on every delivery in the main process, so they are
    kept flat: the series is found once per delivery from its raw routing key and
    task name, then kept on the request; each callback catches its own failure.
    """

    def __init__(
        self,
        metrics: WorkerMetrics,
        queues: Iterable[str],
        is_registered: Callable[[str], bool],
        started: StartedWindow,
        eta_trap: EtaTrap | None = None,
    ) -> None:
        """``eta_trap``: None on a broker without a visibility timeout."""
        self.metrics = metrics
        self.queues = frozenset(queues)
        self.is_registered = is_registered
        self.started = started
        self.eta_trap = eta_trap
        #: The runtimes of failed deliveries by error type, for OTLP's ``error.type``.
        self.failed_runtimes = FailedRuntimes(RUNTIME_BUCKETS)
        self._by_delivery: dict[tuple[Any, Any], TaskSeries] = {}
        self._log = LogThrottle()

    def queue_label(self, queue: str | None) -> str:
        return queue if queue in self.queues else OTHER_QUEUE

    def task_label(self, task: str | None) -> str:
        return task if task and self.is_registered(task) else UNKNOWN_TASK

    def series(self, queue: str, task: str) -> TaskSeries:
        return self.metrics.tasks.series(queue, task)

    def prime(self, tasks: Iterable[str], route: Callable[[str], str], depth: bool) -> None:
        """Start at zero: every (registered task x routed queue), every queue's gauges, and
        with ``depth`` (a Redis broker, which the depth poller reads) every queue's depth."""
        for task in tasks:
            if not task.startswith("celery.") and task != HEALTH_TASK:
                self.series(self.queue_label(route(task)), task)
        for queue in self.queues:
            if depth:
                self.metrics.broker.queue_depth.labels(queue).set(0)
            self.metrics.tasks.queue(queue)

    def on_received(self, request: Any) -> None:
        try:
            if request.type != HEALTH_TASK and request.metrics_series is None:
                self._receive(request)
        except Exception as exc:
            self._skip(exc)

    def on_started(self, request: Any) -> None:
        try:
            series: TaskSeries | None = request.metrics_series
            if series is None:
                if request.type == HEALTH_TASK:
                    return
                series = self._receive(request)
            series.started += 1
            headers = request.request_dict or {}
            if self.started.seen(
                request.id, headers.get("retries") or 0, headers.get(REQUEUE_HEADER) or 0
            ):
                series.duplicates += 1
            gauges = series.gauges
            gauges.reserved -= 1
            gauges.active += 1
            if PUBLISHED_AT_HEADER in (request.request_dict or ()):
                wait = queue_wait_seconds(request)
                if wait is not None:
                    series.queue_wait.observe(wait, request.trace_id())
        except Exception as exc:
            self._skip(exc)

    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        try:
            series: TaskSeries | None = request.metrics_series
            if series is None:
                if request.type == HEALTH_TASK:
                    return
                series = self._receive(request)  # revoked at receipt: never announced
            started_at: float | None = request.started_at
            if started_at is None:
                series.gauges.reserved -= 1
            else:
                series.gauges.active -= 1
                runtime = time.monotonic() - started_at
                if outcome == FAILED:
                    queue, task = self._labels(request)
                    error = error_type(exception)
                    trace_id = request.trace_id()
                    self.failed_runtimes.record(
                        series.runtime, queue, task, error, runtime, trace_id
                    )
                else:
                    series.runtime.observe(runtime, request.trace_id())
            series.finished[outcome] += 1
            if outcome == FAILED and exception is not None:
                queue, task = self._labels(request)
                self.metrics.task_exceptions.labels(queue, task, type(exception).__name__).inc()
        except Exception as exc:
            self._skip(exc)

    def on_dead_lettered(self, queue: str, task: str | None, reason: str, refused: bool) -> None:
        try:
            queue_label = self.queue_label(queue)
            self.metrics.messages_dead_lettered.labels(queue_label, reason).inc()
            if refused:
                series = self.series(queue_label, self.task_label(task))
                series.received += 1
                series.finished[REJECTED] += 1
        except Exception as exc:
            self._skip(exc)

    def _receive(self, request: Any) -> TaskSeries:
        """Counts the receipt and keeps the series on the request.

        A restored message is counted as redelivered; any other with an ETA is
        checked against the visibility timeout (a restored copy was counted
        already, where it was first delivered)."""
        info = request.delivery_info or {}
        key = (info.get("routing_key"), request.type)
        series = self._by_delivery.get(key)
        if series is None:
            series = self.series(*self._labels(request))
            if len(self._by_delivery) < MAX_DELIVERY_KEYS:
                self._by_delivery[key] = series
        request.metrics_series = series
        series.received += 1
        series.gauges.reserved += 1
        if info.get("redelivered"):
            series.redelivered += 1
        elif request.eta is not None and self.eta_trap is not None:
            hard_limit = (request.time_limits or (None, None))[1] or request.task.time_limit
            if self.eta_trap.beyond(request.type, request.eta, hard_limit) is not None:
                series.eta_beyond += 1
        return series

    def _labels(self, request: Any) -> tuple[str, str]:
        info = request.delivery_info or {}
        return self.queue_label(info.get("routing_key")), self.task_label(request.type)

    def _skip(self, exc: Exception) -> None:
        """Telemetry never breaks a task: log (once a minute at most) and skip the event."""
        if self._log.due():
            logger.warning("task metrics skipped an event: %s: %s", type(exc).__name__, exc)


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
