"""Checks and wiring done once when a worker starts, through Celery signals.

``connect()`` (run by ``import worker``) connects the start-up receivers and
installs the telemetry for the app, as any app would; what the jobpilot worker
adds to it (dead letters, the database check, client-span hooks) is handed over
as :class:`telemetry.Extensions`, built when the worker starts.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_ready

import telemetry
from telemetry import receivers
from telemetry.deadletters.records import deadletter_key
from telemetry.logs import configure_logging
from worker import redis_client, timer_hygiene
from worker.broker_policy import refuse_cluster, warn_about_broker
from worker.celery_app import app, settings_of
from worker.db import bridge
from worker.settings import Settings, SettingsError
from worker.version import __version__

logger = logging.getLogger("worker.startup")

#: The spans' service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise.
SERVICE_NAME = "jobpilot-worker"


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


def telemetry_extensions() -> telemetry.Extensions:
    """What the jobpilot worker adds to the telemetry, from its settings."""
    settings = settings_of(app)
    return telemetry.Extensions(
        deadletter_key=deadletter_key(settings.broker_key_prefix),
        select_one=(
            functools.partial(bridge.select_one, settings.effective_database_url)
            if settings.database_configured
            else None
        ),
        before_first_engine=bridge.before_first_engine,
        on_task_redis_client=redis_client.on_task_client,
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
    refusal = refuse_cluster(app)
    if refusal is not None:
        raise SystemExit(refusal)
    logger.info("configuration: %s", settings.describe())


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    warn_about_broker(app)
    timer_hygiene.install(sender)


RECEIVERS: tuple[receivers.Receiver, ...] = (
    (setup_logging, _on_setup_logging, "jobpilot.setup_logging"),
    # Before the telemetry's own worker_init receiver: Celery calls receivers in
    # the order they were connected, and the configuration line comes first.
    (worker_init, _on_worker_init, "jobpilot.worker_init"),
    (worker_ready, _on_worker_ready, "jobpilot.worker_ready"),
)


def connect() -> None:
    """Connect the start-up receivers and install the telemetry; idempotent."""
    receivers.connect(RECEIVERS)
    telemetry.install(
        app,
        extensions=telemetry_extensions,
        exhausted=True,
        service_name=SERVICE_NAME,
        service_version=__version__,
    )
