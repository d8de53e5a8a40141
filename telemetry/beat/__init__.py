"""celery beat, watched: ``telemetry.install(app)`` covers ``celery -A app beat`` too.

    celery -A yourmodule beat          # serves /metrics, /livez, /readyz on METRICS_HOST:BEAT_METRICS_PORT

The layout, by role: ``hooks`` (``Service.start`` and ``Scheduler.apply_async``,
wrapped while an app is installed), ``monitor`` (one running beat: what it
starts and stops), ``loop`` (the tick hook and Celery's own tick stamp),
``health`` (``/livez`` and the ``scheduler`` readiness check), ``schedules``
(due times: late, missed and catch-up runs), ``series`` (the per-entry
series), ``entries`` (where each scheduler keeps its entries) and
``heartbeat`` (how many beats of an app send). The series are declared in
``telemetry.metrics.beat_catalogue``; docs/beat.md is the user's page.
"""

from __future__ import annotations

from telemetry.beat.hooks import BEAT_HOOKS, BeatHooks

__all__ = ["BEAT_HOOKS", "BeatHooks"]
