"""The exhausted set for one app: every task that failed for good is kept, to be acted on.

    capture = ExhaustedCapture(app, settings, registry, labels)   # a worker concern
    capture.start(worker)                # worker_init, main process
    capture.pool_process()               # worker_process_init, each pool process
    capture.stop()                       # worker_shutdown

A worker concern (``telemetry.wiring.concern``), built at ``worker_init`` for an
app installed with ``install(app, exhausted=True)``.

What counts as exhausted is ``telemetry.failed.capture``'s. Who writes:

* a pool process (or the main process of a solo or threads pool, where tasks
  run) writes its own task's failure from Celery's ``task_failure`` signal,
  inside the trace, in one round trip (one EVALSHA). A success costs nothing:
  the signal fires on failures only. The signal also fires from the worker's
  own failure handlers (a ``Reject``, a timeout that may be requeued); those
  are told apart by the request context (``called_directly``) and left out.
* the main process writes a hard time limit once its message is acknowledged,
  from a delivery observer, and hands the write to a thread of its own: its
  event loop never waits on the broker.

``celery_task_exhausted_total{queue,task}`` is counted by the main process's
observer, for both. A write the broker refuses is logged (once a minute at most,
across the pool) and counted in ``celery_exhausted_write_errors_total``; the
task's outcome is untouched.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.exceptions import TimeLimitExceeded
from celery.signals import task_failure
from prometheus_client import CollectorRegistry

from telemetry import receivers
from telemetry.broker import broker_redis
from telemetry.delivery.observers import OBSERVERS, DeliveryObserver
from telemetry.failed.capture import exhausted_outcome, record_in_main, record_in_pool
from telemetry.failed.locate import stores_for_app
from telemetry.failed.records import FailedRecord, Kind
from telemetry.failed.store import FailedStore
from telemetry.log_throttle import LogThrottle
from telemetry.messages import HEALTH_TASK
from telemetry.metrics.failed_catalogue import ExhaustedMetrics
from telemetry.metrics.shared_counter import SharedCounter
from telemetry.settings import TelemetrySettings
from telemetry.wiring.concern import Concern

logger = logging.getLogger("telemetry.failed")

#: Records waiting for the main process's writer thread; past it, a record is an error.
MAX_PENDING_WRITES = 1000
#: How long ``stop`` waits for the writer thread's last records.
STOP_TIMEOUT_SECONDS = 2.0
#: A write waits at most this long for the broker: a failing task's pool process must
#: not hang on a dead one (a write takes well under a millisecond).
WRITE_SOCKET_TIMEOUT_SECONDS = 2.0
#: The (queue, task) labels of a routing key and task name, as the task series label them.
Labels = Callable[[str | None, str | None], tuple[str, str]]


class ExhaustedCapture(DeliveryObserver, Concern):
    """The exhausted set's capture for ``app``, from ``worker_init`` to ``worker_shutdown``."""

    def __init__(
        self,
        app: Celery,
        settings: TelemetrySettings,
        registry: CollectorRegistry | None = None,
        labels: Labels | None = None,
    ) -> None:
        """Count into ``registry`` (None: no metrics), labelled by ``labels``."""
        self.app = app
        self.settings = settings
        self.registry = registry
        self.labels = labels
        self.metrics: ExhaustedMetrics | None = None
        #: Between start and stop: failures are kept.
        self.armed = False
        # Shared memory, made at start (before the pool forks), not when install() runs.
        self.errors: SharedCounter | None = None
        self._log: LogThrottle | None = None
        self._store: FailedStore | None = None
        self._pending: queue.Queue[FailedRecord | None] = queue.Queue(MAX_PENDING_WRITES)
        self._writer: threading.Thread | None = None
        self.receivers: tuple[receivers.Receiver, ...] = (
            (task_failure, self._on_task_failure, f"telemetry.failed.task_failure.{id(app)}"),
        )

    # worker_init: the main process, before the pool forks -------------------------
    def start(self, worker: Any) -> None:
        """Arm the capture: pool processes inherit the ``task_failure`` receiver through fork."""
        settings = self.settings
        self.errors, self._log = SharedCounter(), LogThrottle()
        if self.registry is not None:
            self.metrics = ExhaustedMetrics(self.registry, self.errors)
            self._prime()
        receivers.connect(self.receivers)
        self.armed = True
        OBSERVERS.add(self)
        self._writer = threading.Thread(target=self._write_pending, name="exhausted-writer")
        self._writer.daemon = True
        self._writer.start()
        # At every start, both kinds are trimmed, and the old dead-letter list drained,
        # even on a worker that leaves the size polls to the broker exporter.
        try:
            for store in stores_for_app(self.app, settings).values():
                store.maintain()
        except Exception as exc:
            logger.warning("failed work: not kept at start: %s", type(exc).__name__)

    def _prime(self) -> None:
        """Every (registered task, routed queue) starts at zero, as the task series do."""
        assert self.metrics is not None and self.labels is not None
        router = self.app.amqp.router
        for name in self.app.tasks:
            if name.startswith("celery.") or name == HEALTH_TASK:
                continue
            queue_name = router.route({}, name)["queue"].name
            self.metrics.task_exhausted.labels(*self.labels(queue_name, name)).inc(0)

    # worker_process_init: each pool process ----------------------------------------
    def pool_process(self) -> None:
        """Forget the main process's observer, thread and client: this process writes its own."""
        OBSERVERS.remove(self)
        self._writer = None
        self._store = None

    # worker_shutdown ---------------------------------------------------------------
    def stop(self) -> None:
        OBSERVERS.remove(self)
        receivers.disconnect(self.receivers)
        self.armed = False
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(queue.Full):
                self._pending.put(None, timeout=STOP_TIMEOUT_SECONDS)
            writer.join(STOP_TIMEOUT_SECONDS)

    # Writing -------------------------------------------------------------------------
    def store(self) -> FailedStore:
        if self._store is None:
            client = broker_redis(self.app, socket_timeout=WRITE_SOCKET_TIMEOUT_SECONDS)
            self._store = stores_for_app(self.app, self.settings, client)[Kind.EXHAUSTED]
        return self._store

    def write(self, record: FailedRecord) -> bool:
        """Store one record; a refusal is logged (throttled) and counted, never raised."""
        try:
            self.store().write(record)
            return True
        except Exception as exc:
            self._lost(f"could not keep exhausted task {record.task}[{record.task_id}]", exc)
            return False

    def _lost(self, what: str, exc: Exception) -> None:
        """A record that will not be stored: counted, and logged once a minute at most."""
        if self.errors is not None:
            self.errors.inc()
        if self._log is not None and self._log.due():
            logger.error("%s: %s", what, type(exc).__name__)

    def _on_task_failure(
        self,
        sender: Any = None,
        exception: BaseException | None = None,
        einfo: Any = None,
        **_: Any,
    ) -> None:
        if not self.armed or exception is None or getattr(sender, "app", None) is not self.app:
            return
        try:
            record = record_in_pool(sender, exception, einfo)
        except Exception as exc:
            self._lost("exhausted task not recorded", exc)
            return
        if record is not None:
            self.write(record)

    # The main process's observer -------------------------------------------------------
    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        if request.type == HEALTH_TASK or not exhausted_outcome(outcome, exception):
            return
        if self.metrics is not None and self.labels is not None:
            info = request.delivery_info or {}
            self.metrics.task_exhausted.labels(
                *self.labels(info.get("routing_key"), request.type)
            ).inc()
        if not isinstance(exception, TimeLimitExceeded):
            return  # written where the task ran
        try:
            self._pending.put_nowait(record_in_main(request, exception))
        except queue.Full as exc:
            self._lost(f"exhausted set: {MAX_PENDING_WRITES} writes pending, one dropped", exc)
        except Exception as exc:  # counted as lost, like a refused write
            self._lost("exhausted task not recorded", exc)

    def _write_pending(self) -> None:
        while True:
            record = self._pending.get()
            if record is None:
                return
            self.write(record)
