"""A worker's metrics, from ``worker_init`` to ``worker_shutdown``: a concern (``telemetry.wiring.concern``).

    metrics = Metrics(context)    # the registry, the recorder, the depth poller: built, not started
    metrics.start(worker)         # every series at zero; deliveries and publishes counted
    metrics.ready(consumer)       # identity and pool gauges; the consumer followed; depth polled
    metrics.stop()
    metrics.pool_process()        # a pool process forwards its publish counts to the main process

Everything is recorded in the main process (``telemetry.metrics.recorder``) into
one registry, which :class:`telemetry.endpoints.Endpoints` serves through
:attr:`Metrics.cache`: each fresh render first follows the consumer, so queues
added or cancelled at run time show at once. The depth poller follows it too,
before each poll. ``start`` turns off prometheus-client's ``_created`` series,
a switch of the whole process that has no reading, so ``stop`` leaves it off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import celery
from celery.worker import state as worker_state
from prometheus_client import CollectorRegistry, disable_created_metrics

from telemetry.broker import app_queues
from telemetry.delivery.observers import OBSERVERS
from telemetry.endpoints import RenderCache
from telemetry.failed.locate import polled_stores
from telemetry.metrics.at_least_once import EtaTrap, StartedWindow
from telemetry.metrics.catalogue import WorkerMetrics
from telemetry.metrics.consumer import ConsumerView, busy_requests
from telemetry.metrics.forwarding import PublishForwarder
from telemetry.metrics.held import HeldRequests, scheduled_requests
from telemetry.metrics.publish import PublishRecorder
from telemetry.metrics.queues import PollingThread, QueuePoller
from telemetry.metrics.recorder import DeliveryRecorder
from telemetry.wiring.concern import Concern
from telemetry.wiring.context import WorkerContext
from telemetry.wiring.producer import PUBLISH_HOOKS


class Metrics(Concern):
    """The worker's registry and everything that writes to it."""

    def __init__(self, context: WorkerContext) -> None:
        app, settings = context.app, context.settings
        self.context = context
        self.registry = CollectorRegistry()
        #: Celery's worker, from ``start`` on: Celery 5.6's ETA requests are read from its timer.
        self.worker: Any = None
        self.metrics = WorkerMetrics(
            self.registry,
            held=HeldRequests(
                scheduled_requests(lambda: self.worker), worker_state.active_requests
            ),
        )
        visibility = context.visibility_timeout
        self.recorder = DeliveryRecorder(
            self.metrics,
            app_queues(app),
            lambda name: name in app.tasks,
            StartedWindow(settings.duplicate_window, settings.duplicate_window_max),
            None if visibility is None else EtaTrap(visibility, app.conf.task_time_limit),
        )
        self.forwarder = PublishForwarder(self._count_publish)
        self.poller = (
            QueuePoller.for_app(
                app,
                sorted(self.recorder.queues),
                polled_stores(app, settings, context.extensions.deadletter_key, context.exhausted),
                self.metrics.broker,
            )
            if context.polls_queues
            else None
        )
        self.view = ConsumerView(
            self.metrics, self.recorder.queues, self.poller.watch if self.poller else None
        )
        self.polling = (
            PollingThread(self._poll, settings.queue_poll_interval, "queue-poller")
            if self.poller
            else None
        )
        #: What /metrics renders.
        self.cache = RenderCache(
            self.registry, settings.metrics_render_interval, before_render=self.view.follow
        )
        self.metrics.worker_pool_busy.set_function(
            lambda: busy_requests(worker_state.active_requests)
        )

    def labels(self, queue: str | None, task: str | None) -> tuple[str, str]:
        """The (queue, task) labels of a routing key and task name, as the task series have them."""
        return self.recorder.queue_label(queue), self.recorder.task_label(task)

    def _count_publish(self, queue: str, task: str) -> None:
        self.metrics.task_published.labels(self.recorder.queue_label(queue), task).inc()

    def _poll(self) -> bool:
        """Follow the consumer first, so queues added at run time are polled."""
        self.view.follow()
        return self.poller.poll() if self.poller is not None else False

    def _publish_recorder(self, count: Callable[[str, str], None]) -> PublishRecorder:
        settings = self.context.settings
        return PublishRecorder(
            count, settings.metrics_max_task_names, keep_argsrepr=settings.trace_task_args
        )

    def start(self, worker: Any) -> None:
        self.worker = worker
        disable_created_metrics()  # type: ignore[no-untyped-call]
        app, metrics = self.context.app, self.metrics
        router = app.amqp.router
        self.recorder.prime(
            app.tasks,
            lambda name: router.route({}, name)["queue"].name,
            depth=self.context.polls_queues,
        )
        metrics.health_check_last_success.set(time.time())
        if self.context.visibility_timeout is not None:
            metrics.broker.visibility_timeout.set(self.context.visibility_timeout)
        OBSERVERS.add(self.recorder)
        self.forwarder.start_reading()
        PUBLISH_HOOKS.count_with(self._publish_recorder(self._count_publish))

    def ready(self, consumer: Any) -> None:
        hostname = str(getattr(consumer, "hostname", "") or self.context.hostname)
        pool = type(getattr(consumer, "pool", None)).__module__.rsplit(".", 1)[-1]
        self.metrics.worker_info.labels(celery.__version__, pool, hostname).set(1)
        self.view.ready(consumer)
        if self.polling is not None:
            self.polling.start()

    def stop(self) -> None:
        if self.polling is not None:
            self.polling.stop()
        OBSERVERS.remove(self.recorder)
        self.forwarder.stop()

    def pool_process(self) -> None:
        OBSERVERS.remove(self.recorder)
        self.forwarder.become_child()
        PUBLISH_HOOKS.count_with(self._publish_recorder(self.forwarder.forward))
