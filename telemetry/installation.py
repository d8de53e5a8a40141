"""``install(app)`` and ``uninstall(app)``: the telemetry's one entry point, for any Celery app.

``install`` reads no variable and starts nothing when called. It registers the
app and connects process-wide receivers, each of which acts only for an
installed app:

* publish hooks (``telemetry.wiring.producer``), configured at the first publish;
* ``celeryd_init``: the worker's direct queue is turned on (``worker_direct``)
  for the readiness round trip, unless the app set it to False;
* ``worker_init``: the settings are read (a bad value is one ``settings:`` line
  and a non-zero exit), poison safety starts (``telemetry.deadletters.safety``,
  even with ``TELEMETRY_ENABLED=false``), the probe task is registered if the
  app has none, each task's Request gets the delivery announcements
  (``telemetry.delivery.request``), and the main process starts
  (``telemetry.wiring.main_process``);
* ``worker_ready``, ``worker_shutting_down``, ``worker_shutdown``: serve, probe, stop;
* ``worker_process_init``: a pool process (``telemetry.wiring.pool_process``);
* ``celery beat``: its loop and sends (``telemetry.beat``).

``worker_init``, ``worker_ready`` and ``worker_shutdown`` are filtered on
``sender.app``. With ``TELEMETRY_ENABLED=false`` a worker starts none of it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Any

from celery import Celery, Task
from celery import current_app as celery_current_app
from celery.signals import (
    celeryd_init,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from celery.utils.imports import symbol_by_name
from prometheus_client import CollectorRegistry

from telemetry import receivers
from telemetry.beat import BEAT_HOOKS
from telemetry.deadletters.records import app_deadletter_key
from telemetry.deadletters.safety import PoisonSafety
from telemetry.delivery.request import with_telemetry
from telemetry.extensions import Extensions, ExtensionsSource, resolve
from telemetry.failed.exhausted import ExhaustedCapture
from telemetry.messages import HEALTH_TASK
from telemetry.settings import ConfigError, TelemetrySettings, read_settings, required_names
from telemetry.tracing.service import Service
from telemetry.wiring.main_process import WorkerTelemetry
from telemetry.wiring.pool_process import become_pool_process
from telemetry.wiring.producer import PUBLISH_HOOKS

logger = logging.getLogger("telemetry")


@dataclass
class Installation:
    """One installed app: what ``install`` was given, and its worker once started."""

    app: Celery
    extensions: ExtensionsSource | None
    service: Service
    poison: PoisonSafety | None = None
    worker: WorkerTelemetry | None = None
    #: The exhausted set's capture, with ``install(app, exhausted=True)``.
    exhausted: ExhaustedCapture | None = None


_installed: dict[int, Installation] = {}


def install(
    app: Celery,
    registry: CollectorRegistry | None = None,
    *,
    extensions: ExtensionsSource | None = None,
    service_name: str | None = None,
    service_version: str | None = None,
    poison_safety: bool = True,
    exhausted: bool = False,
) -> None:
    """Telemetry for ``app``, in whatever process this is; a second call for it is a no-op.

    ``registry`` receives ``celery_task_published_total`` in a process that only
    publishes (prometheus-client's default registry if None); a worker serves
    a registry of its own. ``extensions``: what the app adds (``telemetry.extensions``).
    ``service_name`` and ``service_version``: the spans' defaults, under
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``; the name defaults to the
    app's main name, else the ``celery -A`` module (``telemetry.tracing.service``).
    ``poison_safety``: what the app's worker cannot run is dead-lettered, not fatal
    (``telemetry.deadletters.safety``); it registers the validating Redis transport
    for the whole process. ``exhausted``: keep every task that fails for good in the
    exhausted set (``telemetry.failed``), to be requeued or deleted later.
    """
    if id(app) in _installed:
        return
    if not _installed:
        receivers.connect(WORKER_RECEIVERS)
    poison = PoisonSafety() if poison_safety else None
    if poison is not None:
        poison.install(app)
    service = Service(service_name, service_version)
    installation = _installed[id(app)] = Installation(app, extensions, service, poison)
    if exhausted:
        installation.exhausted = ExhaustedCapture(app)
        installation.exhausted.install(app)
    PUBLISH_HOOKS.add(app, registry, service)
    BEAT_HOOKS.install(app)


def uninstall(app: Celery) -> None:
    """Undo ``install``; a second call is a no-op."""
    installation = _installed.pop(id(app), None)
    if installation is None:
        return
    PUBLISH_HOOKS.remove(app)
    BEAT_HOOKS.uninstall(app)
    if installation.worker is not None:
        installation.worker.stop()
    if installation.poison is not None:
        installation.poison.uninstall(app)
    if installation.exhausted is not None:
        installation.exhausted.uninstall(app)
    if not _installed:
        receivers.disconnect(WORKER_RECEIVERS)


def installed(app: Any) -> Installation | None:
    return _installed.get(id(app))


def worker_extensions(installation: Installation) -> Extensions:
    """The app's extensions; with poison safety, the dead-letter list's length is measured
    (``celery_deadletter_size``) unless the app names another list."""
    extensions = resolve(installation.extensions)
    if extensions.deadletter_key is None and installation.poison is not None:
        extensions = replace(extensions, deadletter_key=app_deadletter_key(installation.app))
    return extensions


def health_check(task: Task) -> dict[str, Any]:
    """The readiness probe's task: proves a pool process can take and finish work."""
    return {"hostname": task.request.hostname, "pid": os.getpid(), "time": time.time()}


def _on_celeryd_init(instance: Any = None, **_: Any) -> None:
    installation = installed(getattr(instance, "app", None))
    if installation is None:
        return
    conf = installation.app.conf
    if conf.worker_direct:  # reading a value loads the configuration
        return
    # Celery's own defaults are the last layer; any other layer holding the key was the app's.
    if not any("worker_direct" in layer for layer in conf.maps[:-1]):
        conf.worker_direct = True


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    installation = installed(getattr(sender, "app", None))
    if installation is None or installation.worker is not None:
        return
    app = installation.app
    try:
        settings = read_settings(TelemetrySettings)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    health_task = bool(app.conf.worker_direct)
    if settings.telemetry_enabled:
        if not health_task and "health_task" in required_names(settings.readiness_required or ""):
            raise SystemExit(
                "settings: READINESS_REQUIRED: health_task needs the worker's direct queue, "
                "and the app sets worker_direct=False"
            )
        if HEALTH_TASK not in app.tasks:
            app.task(name=HEALTH_TASK, bind=True, shared=False, ignore_result=True)(health_check)
    if installation.poison is not None:
        try:
            installation.poison.start(sender, settings)  # every task, the probe task included
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None
    if not settings.telemetry_enabled:
        return
    for task in app.tasks.values():
        task.Request = with_telemetry(symbol_by_name(task.Request), settings.trace_task_args)
    worker = installation.worker = WorkerTelemetry(
        app,
        settings,
        worker_extensions(installation),
        health_task,
        installation.service.for_app(app),
        exhausted=installation.exhausted is not None,
    )
    worker.start(sender)
    if installation.exhausted is not None:
        registry = worker.registry if settings.metrics_enabled else None
        installation.exhausted.start(sender, settings, registry, worker.labels)


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    installation = installed(getattr(sender, "app", None))
    if installation is not None and installation.worker is not None:
        installation.worker.ready(sender)


def _on_worker_shutting_down(**_: Any) -> None:
    # Sent with the hostname only: every worker of this process is shutting down.
    for installation in list(_installed.values()):
        if installation.worker is not None:
            installation.worker.shutting_down()


def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    installation = installed(getattr(sender, "app", None))
    if installation is not None and installation.poison is not None:
        installation.poison.stop()
    if installation is not None and installation.worker is not None:
        installation.worker.stop()
        installation.worker = None
        if installation.exhausted is not None:
            installation.exhausted.stop()


def _on_worker_process_init(**_: Any) -> None:
    installation = installed(celery_current_app._get_current_object())
    if installation is None or installation.worker is None:
        return
    if os.getpid() == installation.worker.main_pid:
        return  # the solo pool sends this signal from the main process
    become_pool_process(installation.worker)
    installation.worker = None
    if installation.exhausted is not None:
        installation.exhausted.pool_process()


WORKER_RECEIVERS: tuple[receivers.Receiver, ...] = (
    (celeryd_init, _on_celeryd_init, "telemetry.celeryd_init"),
    (worker_init, _on_worker_init, "telemetry.worker_init"),
    (worker_ready, _on_worker_ready, "telemetry.worker_ready"),
    (worker_shutting_down, _on_worker_shutting_down, "telemetry.worker_shutting_down"),
    (worker_shutdown, _on_worker_shutdown, "telemetry.worker_shutdown"),
    (worker_process_init, _on_worker_process_init, "telemetry.worker_process_init"),
)
