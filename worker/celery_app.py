"""Builds the ``jobpilot`` Celery app; its configuration comes from the settings.

Importing this module creates the app object and nothing else: the settings are
read when Celery first needs its configuration (``app.add_defaults`` is lazy),
so a bad variable surfaces as one ``settings: VAR: problem`` line at start, not
as an import error.
"""

from __future__ import annotations

import pkgutil
import ssl
from pathlib import Path
from typing import Any

from celery import Celery

from worker import routing
from worker.retry_policy import DefaultRetryDelay
from worker.settings import SENTINEL_SCHEME, Settings, SettingsError, load_settings

TASKS_PACKAGE = "worker.tasks"
#: ``celery -A worker beat``'s schedule: ``worker.tasks.summaries``.
SUMMARY_ENTRY = "records-summary"
SUMMARY_EVERY_SECONDS = 300.0
CELERY_DEFAULT_RETRY_DELAY = 180

# Poison safety (dead letters instead of crashes) comes with telemetry.install(app),
# as for any app (worker.startup).
app = Celery("jobpilot")


def task_modules() -> list[str]:
    """Every module under ``worker/tasks``: a new domain module needs no registration."""
    path = Path(__file__).with_name("tasks")
    return [f"{TASKS_PACKAGE}.{m.name}" for m in pkgutil.iter_modules([str(path)])]


def tls_options(settings: Settings, url: str) -> dict[str, Any] | None:
    """Certificate-verifying TLS for ``url``, or None for plaintext.

    TLS is on for ``rediss://``, and for a master found through ``sentinel://``
    with ``BROKER_SENTINEL_TLS``. Set explicitly because kombu applies its TLS
    default only when the URL scheme is literally ``rediss``.
    """
    sentinel_tls = url.startswith(SENTINEL_SCHEME) and settings.broker_sentinel_tls
    if not (url.startswith("rediss://") or sentinel_tls):
        return None
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.redis_tls_ca_file:
        options["ssl_ca_certs"] = settings.redis_tls_ca_file
    return options


def sentinel_options(settings: Settings, url: str) -> dict[str, Any]:
    """The transport options that find the master through Sentinel, for a ``sentinel://`` URL.

    ``master_name`` names the master; ``sentinel_kwargs`` are the sentinels' own
    connection options (their password and TLS), the URL's password being the master's.
    """
    if not url.startswith(SENTINEL_SCHEME):
        return {}
    sentinel_kwargs: dict[str, Any] = {}
    if settings.broker_sentinel_password:
        sentinel_kwargs["password"] = settings.broker_sentinel_password
    if settings.broker_sentinel_tls:
        sentinel_kwargs.update(ssl=True, **(tls_options(settings, url) or {}))
    return {"master_name": settings.broker_sentinel_master, "sentinel_kwargs": sentinel_kwargs}


def transport_options(settings: Settings) -> dict[str, Any]:
    """kombu Redis channel options."""
    options: dict[str, Any] = {
        **sentinel_options(settings, settings.broker_url),
        "visibility_timeout": settings.broker_visibility_timeout,
        "unacked_restore_interval": settings.broker_unacked_restore_interval,
        "unacked_restore_throttle": settings.broker_unacked_restore_throttle,
    }
    if settings.broker_key_prefix:
        options["global_keyprefix"] = settings.broker_key_prefix
    return options


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings derived from ours; a pure function, for tests too."""
    backend_options = sentinel_options(settings, settings.result_backend)
    if settings.broker_key_prefix:
        backend_options["global_keyprefix"] = settings.broker_key_prefix
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "broker_transport_options": transport_options(settings),
        "result_backend_transport_options": backend_options,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_retry_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_direct": True,
        # Running tasks get up to their hard limit to finish on a warm shutdown.
        "worker_soft_shutdown_timeout": settings.task_time_limit,
        "task_ignore_result": True,
        "result_expires": settings.result_expires,
        "task_queues": routing.declared_queues(),
        "task_default_queue": routing.DEFAULT_QUEUE,
        "task_routes": (routing.route_task,),
        "task_create_missing_queues": True,
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child,
        # Celery's 180 s default retry delay, capped so it never outlasts the
        # visibility timeout; tasks that set their own keep it, and are checked at start.
        "task_annotations": (
            DefaultRetryDelay(min(CELERY_DEFAULT_RETRY_DELAY, settings.max_retry_countdown)),
        ),
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "beat_schedule": {
            SUMMARY_ENTRY: {"task": "records_summary", "schedule": SUMMARY_EVERY_SECONDS}
        },
        # beat answers `celery inspect ping`, and stops answering once its loop is stale.
        "beat_enable_remote_control": True,
        "jobpilot_settings": settings,
    }
    broker_tls = tls_options(settings, settings.broker_url)
    if broker_tls is not None:
        config["broker_use_ssl"] = broker_tls
    backend_tls = tls_options(settings, settings.result_backend)
    if backend_tls is not None:
        config["redis_backend_use_ssl"] = backend_tls
    return config


def settings_of(celery_app: Celery) -> Settings:
    """The frozen settings the app was configured with."""
    settings: Settings = celery_app.conf.jobpilot_settings
    return settings


def _configure() -> dict[str, Any]:
    try:
        return celery_config(load_settings())
    except SettingsError as exc:
        # One line and a non-zero exit, whoever triggered the configuration.
        raise SystemExit(str(exc)) from None


app.add_defaults(_configure)
app.autodiscover_tasks(task_modules, related_name=None)
