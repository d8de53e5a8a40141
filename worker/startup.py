"""Checks and wiring done once when a worker starts, through Celery signals."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_ready

from worker import timer_hygiene
from worker.broker_policy import warn_about_broker
from worker.celery_app import app, settings_of
from worker.logs import configure_logging
from worker.settings import Settings, SettingsError

logger = logging.getLogger("worker.startup")


def check_retry_delays(celery_app: Celery, settings: Settings) -> None:
    """Every task's retry delays must fit MAX_RETRY_COUNTDOWN (see BROKER_VISIBILITY_TIMEOUT).

    Raises:
        SettingsError: naming the task and the offending attribute.
    """
    limit = settings.max_retry_countdown
    for name, task in sorted(celery_app.tasks.items()):
        if name.startswith("celery."):
            continue
        delay = task.default_retry_delay or 0
        if delay > limit:
            raise SettingsError(
                "MAX_RETRY_COUNTDOWN",
                f"task {name} has default_retry_delay {delay}s above the limit of {limit}s",
            )
        backoff_max = getattr(task, "retry_backoff_max", 0) or 0
        if getattr(task, "retry_backoff", False) and backoff_max > limit:
            raise SettingsError(
                "MAX_RETRY_COUNTDOWN",
                f"task {name} has retry_backoff_max {backoff_max}s above the limit of {limit}s",
            )


def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
    settings = settings_of(app)
    configure_logging(settings.log_level, settings.log_format)


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    settings = settings_of(app)
    try:
        check_retry_delays(app, settings)
    except SettingsError as exc:
        raise SystemExit(str(exc)) from None
    logger.info("configuration: %s", settings.describe())
    if settings.telemetry_enabled:
        # Imported only in a starting worker: importing `worker` stays free of
        # telemetry, and telemetry may import `worker` without a cycle.
        from telemetry import worker as worker_telemetry

        worker_telemetry.attach(sender)


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    warn_about_broker(app)
    timer_hygiene.install(sender)


SIGNAL_HANDLERS = (
    (setup_logging, _on_setup_logging),
    (worker_init, _on_worker_init),
    (worker_ready, _on_worker_ready),
)


def connect() -> None:
    """Connect the start-up receivers; idempotent through ``dispatch_uid``."""
    for signal, handler in SIGNAL_HANDLERS:
        signal.connect(handler, weak=False, dispatch_uid=f"jobpilot.{handler.__name__}")
