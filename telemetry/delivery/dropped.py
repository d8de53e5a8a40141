"""Deliveries Celery forgets on a lost broker connection end as ``requeued``.

    dropped = DroppedRequests()   # a worker concern (``telemetry.wiring.concern``)
    dropped.ready(consumer)       # wraps the consumer's ``on_close``
    dropped.stop()

When its consumer loses the broker connection, Celery forgets the requests it
had received but not started (``Consumer.on_close``: the reserved ones, and
those waiting for their ETA), and discards their jobs not yet accepted by the
pool: kombu restores their messages, which come back as redeliveries. The
telemetry had announced each as received; without an end it would stay in
``celery_tasks_reserved`` for good, and received would never equal finished.
Just before Celery forgets them, each is finished as ``requeued``, as a running
delivery cancelled on the same loss is.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker import state as worker_state

from telemetry.delivery.request import TelemetryRequest
from telemetry.wiring.concern import Concern

logger = logging.getLogger("telemetry.delivery")


def forgotten_on_close() -> list[TelemetryRequest]:
    """The requests Celery's ``on_close`` forgets: received, not executing. (Celery 5.6
    keeps no set of the scheduled ones and leaves them in its timer, to run later.)"""
    active = set(worker_state.active_requests)
    scheduled = getattr(worker_state, "scheduled_requests", ())
    held = set(worker_state.reserved_requests) | set(scheduled)
    return [
        request
        for request in held - active
        if isinstance(request, TelemetryRequest) and request.outcome is None
    ]


class DroppedRequests(Concern):
    def __init__(self) -> None:
        self._consumer: Any = None
        self._own: Any = None  # the consumer's own attribute ``on_close``, if it had one

    def ready(self, consumer: Any) -> None:
        on_close = getattr(consumer, "on_close", None)
        if not callable(on_close):
            return

        def on_close_requeueing() -> Any:
            try:
                for request in forgotten_on_close():
                    request.forgotten()
            except Exception:
                logger.exception("could not end the deliveries dropped on a connection loss")
            return on_close()

        self._own = vars(consumer).get("on_close")
        consumer.on_close = on_close_requeueing
        self._consumer = consumer

    def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        if self._own is None:
            vars(consumer).pop("on_close", None)
        else:
            consumer.on_close = self._own
        self._own = None
