"""The readiness checks: real round trips, each within the probe's timeout.

* ``broker``: a Redis PING on a fresh connection. It catches a broker that is down,
  refuses us, or no longer answers, even while kombu's own connection is still
  reconnecting. Behind Sentinel the connection goes to the master the sentinels
  name at that moment, and the check reports which server it reached.
* ``consumer``: the consumer's own connection still answers
  (``telemetry.readiness.consumer``).
* ``database`` (only when the app hands over a database round trip, as the
  jobpilot worker does when ``DATABASE_URL`` is set): the app's ``SELECT 1`` on a
  fresh connection, untraced.
* ``health_task``: ``health_check_task`` through this worker's own direct queue,
  published with ``expires`` equal to the timeout and observed finishing in this
  process's delivery observers, so no result backend is needed. It catches a
  consumer that no longer consumes and a pool that no longer runs tasks. When
  every pool process is busy, the check reports ``busy`` (up): saturation is
  not unreadiness.

Errors are reported by exception class only, never a message that might hold a
credential.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from celery import Celery

from telemetry.broker import broker_redis, reached
from telemetry.delivery.observers import SUCCEEDED, DeliveryObserver
from telemetry.messages import HEALTH_TASK
from telemetry.metrics.catalogue import WorkerMetrics

#: Each check must answer well within the probe interval.


@dataclass(frozen=True)
class CheckResult:
    up: bool
    latency: float
    error: str | None = None
    busy: bool = False
    #: The server a check reached (``host:port``), where it tells.
    reached: str | None = None


class Check(Protocol):
    name: str

    def run(self, timeout: float) -> CheckResult: ...


class BrokerCheck:
    """PING on a new connection each time; ``connect`` builds the client."""

    name = "broker"

    def __init__(
        self, connect: Callable[[float], redis.Redis], observe: Callable[[float], None]
    ) -> None:
        self.connect = connect
        self.observe = observe

    @classmethod
    def for_app(cls, app: Celery, observe: Callable[[float], None]) -> BrokerCheck:
        """PING ``app``'s resolved broker; ``observe`` gets each round trip's seconds."""
        return cls(lambda timeout: broker_redis(app, socket_timeout=timeout), observe)

    def run(self, timeout: float) -> CheckResult:
        started = time.perf_counter()
        client = self.connect(timeout)
        try:
            client.ping()
        except Exception as exc:
            return CheckResult(
                False, time.perf_counter() - started, type(exc).__name__, reached=reached(client)
            )
        finally:
            client.close()
        latency = time.perf_counter() - started
        self.observe(latency)
        return CheckResult(True, latency, reached=reached(client))


class DatabaseCheck:
    """``select_one``, the app's own round trip (``SELECT 1`` on a fresh connection), within the timeout."""

    name = "database"

    def __init__(self, select_one: Callable[[], Awaitable[object]]) -> None:
        self.select_one = select_one

    def run(self, timeout: float) -> CheckResult:
        import asyncio

        from opentelemetry.instrumentation.utils import suppress_instrumentation

        started = time.perf_counter()
        try:
            # Probes are not traced, even where the pool's database instrumentors
            # share this process (solo and threads pools).
            with suppress_instrumentation():
                asyncio.run(asyncio.wait_for(self._select_one(), timeout))
        except Exception as exc:
            return CheckResult(False, time.perf_counter() - started, type(exc).__name__)
        return CheckResult(True, time.perf_counter() - started)

    async def _select_one(self) -> None:
        await self.select_one()


class HealthTaskCheck(DeliveryObserver):
    """A round trip through the worker's direct queue, completed via the delivery observers."""

    name = "health_task"

    def __init__(
        self,
        publish: Callable[[str, float], None],
        pool_saturated: Callable[[], bool],
        metrics: WorkerMetrics,
    ) -> None:
        self.publish = publish
        self.pool_saturated = pool_saturated
        self.metrics = metrics
        self._waiting: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def run(self, timeout: float) -> CheckResult:
        task_id = str(uuid.uuid4())
        done = threading.Event()
        with self._lock:
            self._waiting[task_id] = done
        started = time.perf_counter()
        try:
            try:
                self.publish(task_id, timeout)
            except Exception as exc:
                return CheckResult(False, time.perf_counter() - started, type(exc).__name__)
            if done.wait(timeout):
                latency = time.perf_counter() - started
                self.metrics.health_check_roundtrip.observe(latency)
                self.metrics.health_check_last_success.set(time.time())
                return CheckResult(True, latency)
            if self.pool_saturated():
                return CheckResult(True, time.perf_counter() - started, None, busy=True)
            return CheckResult(False, time.perf_counter() - started, "Timeout")
        finally:
            with self._lock:
                self._waiting.pop(task_id, None)

    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        if request.type != HEALTH_TASK or outcome != SUCCEEDED:
            return
        with self._lock:
            done = self._waiting.get(request.id)
        if done is not None:
            done.set()
