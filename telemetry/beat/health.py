"""Beat's /livez and its ``scheduler`` readiness check, both read from its loop (``telemetry.beat.loop``).

``/livez`` fails only when the loop is stale: it has not turned within the
liveness timeout. ``BEAT_LIVENESS_TIMEOUT`` defaults to Celery's own rule for
remote control (``beat_remote_control_max_tick_age`` if set, 0 turning the
check off; else twice the scheduler's max interval, at least 60 s). A beat
waiting in ``beat_init`` (a RedBeat standby waiting for its lock) or waiting
for its broker's first connection is live and not ready.

The ``scheduler`` check passes when the beat is active and ticking; ``/readyz``
also needs the ``broker`` check (a PING on a fresh connection), as a worker's does.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery import beat as celery_beat

from telemetry.beat.loop import CONNECTING, STALE, STARTING, TICKING, WAITING, BeatLoop
from telemetry.readiness.checks import CheckResult
from telemetry.settings import TelemetrySettings

REASONS = {
    WAITING: "beat has not started its loop: it waits in beat_init, as a standby waits "
    "for its scheduler lock",
    CONNECTING: "beat waits for its first connection to the broker",
    STARTING: "beat's first tick is under way",
}


def liveness_timeout(settings: TelemetrySettings, app: Celery, scheduler: Any) -> float:
    """``BEAT_LIVENESS_TIMEOUT``, else Celery's rule (``BeatPidbox.max_tick_age``)."""
    if settings.beat_liveness_timeout is not None:
        return settings.beat_liveness_timeout
    configured = app.conf.beat_remote_control_max_tick_age
    if configured is not None:
        return float(configured)
    interval = scheduler.max_interval or celery_beat.DEFAULT_MAX_INTERVAL
    return float(max(interval * 2, celery_beat.BeatPidbox.min_tick_age))


class BeatLiveness:
    """What ``/livez`` answers for a beat."""

    def __init__(self, loop: BeatLoop) -> None:
        self.loop = loop

    def report(self) -> tuple[bool, dict[str, Any]]:
        loop = self.loop
        phase, age = loop.phase(), loop.tick_age()
        alive = phase != STALE
        payload: dict[str, Any] = {
            "alive": alive,
            "state": phase,
            "age_seconds": None if age is None else round(age, 3),
            "timeout_seconds": loop.timeout,
        }
        if phase == STALE:
            payload["reason"] = (
                f"beat's loop has not turned for {age:.1f} s, over the {loop.timeout:g} s "
                "liveness timeout: a tick is blocked"
            )
        elif phase != TICKING:
            payload["reason"] = REASONS[phase]
        return alive, payload


class SchedulerCheck:
    """Up while this beat sends and its loop turns; down, with the phase, otherwise."""

    name = "scheduler"

    def __init__(self, loop: BeatLoop) -> None:
        self.loop = loop

    def run(self, timeout: float) -> CheckResult:
        phase = self.loop.phase()
        if phase == TICKING:
            return CheckResult(True, 0.0)
        return CheckResult(False, 0.0, phase)
