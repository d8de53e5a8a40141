"""Readiness: can this worker do work now? Real round trips, not a constant.

    probe = ReadinessProbe(checks, required, interval, check_up, ready)
    probe.start()              # each check on its own timer, in the main process
    status, payload = probe.report()   # what /readyz answers

Each check (``telemetry.readiness.checks``) runs with a timeout below the
interval. ``/readyz`` is 200 when every required check passes and 503
otherwise, or at once after SIGTERM (:meth:`ReadinessProbe.shutting_down`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from prometheus_client import Gauge

from telemetry.readiness.checks import Check, CheckResult
from telemetry.settings import required_names

logger = logging.getLogger("telemetry.readiness")

#: Each check must answer well within the probe interval.
TIMEOUT_FRACTION = 0.66


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
    #: ``celery_readiness_check_up{check}`` and the process's ready gauge.
    check_up: Gauge
    ready: Gauge
    _states: dict[str, CheckState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _shutting_down: bool = False

    def __post_init__(self) -> None:
        for check in self.checks:
            self._states[check.name] = CheckState()
            self.check_up.labels(check.name).set(0)
        self.ready.set(0)

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
        self.ready.set(0)

    def _loop(self, check: Check) -> None:
        """Start a run every interval, however long the last took: a check that timed
        out does not put off the next (the timeout is below the interval)."""
        due = time.monotonic()
        while not self._stop.is_set():
            self.run_once(check)
            due += self.interval
            self._stop.wait(max(0.0, due - time.monotonic()))

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
        self.check_up.labels(check.name).set(1 if result.up else 0)
        self.ready.set(1 if ready else 0)
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
                    "reached": state.result.reached if state.result else None,
                    "checked_at": state.checked_at,
                }
                for name, state in self._states.items()
            }
            shutting_down = self._shutting_down
        payload = {"ready": ready, "shutting_down": shutting_down, "checks": checks}
        return (HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE), payload


def required_checks(configured: str | None, available: Iterable[str]) -> frozenset[str]:
    """``READINESS_REQUIRED`` (comma-separated), or by default every check the worker runs."""
    if configured:
        return required_names(configured)
    return frozenset(available)
