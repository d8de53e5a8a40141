"""A worker's readiness, from ``worker_init`` to ``worker_shutdown``: a concern (``telemetry.wiring.concern``).

    readiness = Readiness(context, metrics)   # the checks and the probe, built
    readiness.start(worker)     # the health check hears of deliveries
    readiness.ready(consumer)   # each check on its timer
    readiness.shutting_down()   # /readyz is 503 at once
    readiness.stop()

The checks are those the worker can run: ``broker`` and ``consumer`` on a Redis
broker (``telemetry.readiness.consumer``),
``health_task`` while the app keeps the worker's direct queue
(``telemetry.readiness.health_task``), ``database`` when the app hands over a
round trip. :attr:`Readiness.probe` is what /readyz reports
(``telemetry.endpoints.Endpoints``).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.utils.nodenames import worker_direct
from celery.worker import state as worker_state

from telemetry.delivery.observers import OBSERVERS
from telemetry.messages import HEALTH_TASK, PROBE_HEADER
from telemetry.metrics.catalogue import WorkerMetrics
from telemetry.metrics.consumer import busy_requests, pool_processes
from telemetry.readiness.checks import BrokerCheck, Check, DatabaseCheck, HealthTaskCheck
from telemetry.readiness.consumer import ConsumerCheck
from telemetry.readiness.probe import ReadinessProbe, required_checks
from telemetry.wiring.concern import Concern
from telemetry.wiring.context import WorkerContext

logger = logging.getLogger("telemetry.readiness")


class Readiness(Concern):
    """The probe, its checks, and the consumer whose pool size tells busy from stuck."""

    def __init__(self, context: WorkerContext, metrics: WorkerMetrics) -> None:
        self.context = context
        self.consumer: Any = None
        self.direct_queue = worker_direct(context.hostname)
        checks: list[Check] = []
        if context.redis:
            checks.append(BrokerCheck.for_app(context.app, metrics.broker.ping.observe))
            with context.app.connection_for_read() as connection:
                checks.append(ConsumerCheck(lambda: self.consumer, connection.as_uri()))
        self.health: HealthTaskCheck | None = None
        if context.health_task:
            self.health = HealthTaskCheck(self._publish_health_check, self._saturated, metrics)
            checks.append(self.health)
        if context.extensions.select_one is not None:
            checks.append(DatabaseCheck(context.extensions.select_one))
        settings = context.settings
        self.probe = ReadinessProbe(
            checks,
            required_checks(settings.readiness_required, [check.name for check in checks]),
            settings.readiness_interval,
            metrics.broker.readiness_check_up,
            metrics.worker_ready,
        )

    def _publish_health_check(self, task_id: str, timeout: float) -> None:
        self.context.app.send_task(
            HEALTH_TASK,
            task_id=task_id,
            queue=self.direct_queue,
            expires=timeout,
            headers={PROBE_HEADER: "1"},
        )

    def _saturated(self) -> bool:
        """Every pool process is busy: a health check waiting in line is not a failure."""
        processes = pool_processes(self.consumer) if self.consumer is not None else 0
        return busy_requests(worker_state.active_requests) >= max(1, processes)

    def start(self, worker: Any) -> None:
        if self.health is not None:
            OBSERVERS.add(self.health)

    def ready(self, consumer: Any) -> None:
        self.consumer = consumer
        self.probe.start()
        # Logged here, not at worker_init: Celery sets up the worker's logging in between.
        if not self.context.redis:
            logger.info("telemetry: the broker is not Redis: no queue depth, age or broker check")
        if not self.context.health_task:
            logger.info("telemetry: worker_direct is off, so readiness has no health_task check")

    def shutting_down(self) -> None:
        self.probe.shutting_down()

    def stop(self) -> None:
        self.probe.stop()
        self._forget()

    def pool_process(self) -> None:
        self._forget()

    def _forget(self) -> None:
        if self.health is not None:
            OBSERVERS.remove(self.health)
