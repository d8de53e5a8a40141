"""Readiness: can this worker do work now? Real round trips, not a constant.

Each check runs on its own timer in the main process, with a timeout below
``READINESS_INTERVAL``:

* ``broker``: a Redis PING on a fresh connection. It catches a broker that is down,
  refuses us, or no longer answers, even while kombu's own connection is still
  reconnecting.
* ``database`` (only when ``DATABASE_URL`` is set): ``SELECT 1`` on a fresh
  connection. SQLAlchemy and the driver are imported on its first run, not before.
* ``health_task``: ``health_check_task`` through this worker's own direct queue,
  published with ``expires`` equal to the timeout and observed finishing in this
  process's request lifecycle, so no result backend is needed. It catches a
  consumer that no longer consumes and a pool that no longer runs tasks. When
  every pool process is busy, the check reports ``busy`` (up): saturation is
  not unreadiness.

``/readyz`` is 200 when every required check passes and 503 otherwise, or at
once after SIGTERM. Errors are reported by exception class only, never a message
that might hold a credential.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

from telemetry.catalogue import WorkerMetrics

logger = logging.getLogger("telemetry.readiness")

#: Each check must answer well within the probe interval.
TIMEOUT_FRACTION = 0.66
PROBE_HEADER = "x-jobpilot-probe"


@dataclass(frozen=True)
class CheckResult:
    up: bool
    latency: float
    error: str | None = None
    busy: bool = False


class Check(Protocol):
    name: str

    def run(self, timeout: float) -> CheckResult: ...


class BrokerCheck:
    """PING on a new connection each time; ``connect`` builds the client."""

    name = "broker"

    def __init__(self, connect: Callable[[float], Any], observe: Callable[[float], None]) -> None:
        self.connect = connect
        self.observe = observe

    def run(self, timeout: float) -> CheckResult:
        started = time.perf_counter()
        client = self.connect(timeout)
        try:
            client.ping()
        except Exception as exc:
            return CheckResult(False, time.perf_counter() - started, type(exc).__name__)
        finally:
            client.close()
        latency = time.perf_counter() - started
        self.observe(latency)
        return CheckResult(True, latency)


class DatabaseCheck:
    name = "database"

    def __init__(self, url: str) -> None:
        self.url = url

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
        # Deferred on purpose: the main process loads the driver only if this runs.
        from sqlalchemy import text

        from worker.db.bridge import engine_for

        async with engine_for(self.url).connect() as connection:
            await connection.execute(text("SELECT 1"))


class HealthTaskCheck:
    """A round trip through the worker's direct queue, completed via the lifecycle."""

    name = "health_task"
    task_name = "health_check_task"

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

    # worker.lifecycle.DeliveryObserver: only health-check completions matter here.
    def on_received(self, request: Any) -> None:
        return

    def on_started(self, request: Any) -> None:
        return

    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        if request.type != self.task_name or outcome != "succeeded":
            return
        with self._lock:
            done = self._waiting.get(request.id)
        if done is not None:
            done.set()

    def on_dead_lettered(self, queue: str, task: str | None, reason: str, refused: bool) -> None:
        return


@dataclass
class CheckState:
    result: CheckResult | None = None
    checked_at: float | None = None


@dataclass
class ReadinessProbe:
    """Runs each check on its own timer; the state is read by /readyz and the gauges."""

    checks: list[Check]
    required: frozenset[str]
    interval: float
    metrics: WorkerMetrics
    _states: dict[str, CheckState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _shutting_down: bool = False

    def __post_init__(self) -> None:
        for check in self.checks:
            self._states[check.name] = CheckState()
            self.metrics.readiness_check_up.labels(check.name).set(0)
        self.metrics.worker_ready.set(0)

    @property
    def timeout(self) -> float:
        return self.interval * TIMEOUT_FRACTION

    def start(self) -> None:
        for check in self.checks:
            threading.Thread(
                target=self._loop, args=(check,), name=f"readiness-{check.name}", daemon=True
            ).start()

    def stop(self) -> None:
        self._stop.set()

    def shutting_down(self) -> None:
        """SIGTERM: unready at once, whatever the checks say."""
        with self._lock:
            self._shutting_down = True
        self.metrics.worker_ready.set(0)

    def _loop(self, check: Check) -> None:
        while not self._stop.is_set():
            self.run_once(check)
            self._stop.wait(self.interval)

    def run_once(self, check: Check) -> CheckResult:
        try:
            result = check.run(self.timeout)
        except Exception as exc:  # a check must never kill its timer
            result = CheckResult(False, 0.0, type(exc).__name__)
        with self._lock:
            state = self._states[check.name]
            was_up = state.result.up if state.result else None
            state.result, state.checked_at = result, time.time()
            ready = self._ready_locked()
        self.metrics.readiness_check_up.labels(check.name).set(1 if result.up else 0)
        self.metrics.worker_ready.set(1 if ready else 0)
        if was_up is not None and was_up != result.up:
            logger.warning(
                "readiness check %s is now %s",
                check.name,
                "up" if result.up else f"down ({result.error})",
            )
        return result

    def _ready_locked(self) -> bool:
        if self._shutting_down:
            return False
        return all(
            (state := self._states.get(name)) is not None
            and state.result is not None
            and state.result.up
            for name in self.required
        )

    def report(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            ready = self._ready_locked()
            checks = {
                name: {
                    "up": state.result.up if state.result else None,
                    "busy": state.result.busy if state.result else False,
                    "required": name in self.required,
                    "latency_seconds": round(state.result.latency, 6) if state.result else None,
                    "error": state.result.error if state.result else "not run yet",
                    "checked_at": state.checked_at,
                }
                for name, state in self._states.items()
            }
            shutting_down = self._shutting_down
        payload = {"ready": ready, "shutting_down": shutting_down, "checks": checks}
        return (HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE), payload


def required_checks(
    configured: str | None, database_configured: bool, available: Iterable[str]
) -> frozenset[str]:
    """READINESS_REQUIRED (comma-separated) or the default: broker, health_task, database if set."""
    names = set(available)
    if configured:
        wanted = {name.strip() for name in configured.split(",") if name.strip()}
        return frozenset(wanted)
    default = {"broker", "health_task"} | ({"database"} if database_configured else set())
    return frozenset(default & names)
