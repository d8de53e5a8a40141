"""``install(app)`` and ``uninstall(app)``: the telemetry's one entry point, for any Celery app.

``install`` reads no variable and starts nothing when called. It builds the
app's concerns and installs them (``telemetry.wiring.assembly``: the dead-letter
transport, the publish hooks, the direct queue, the beat hooks), and connects
the worker receivers below, which act only for an installed app and call the
concerns' hooks (``telemetry.wiring.concern``):

* ``worker_init``: the settings are read (a bad value is one ``settings:`` line
  and a non-zero exit), the worker's concerns are built, and every concern starts;
* ``worker_ready``, ``worker_shutting_down``, ``worker_shutdown``: ready, shutting
  down, stop;
* ``worker_process_init``: a pool process.

``celery beat`` is watched by the beat hooks themselves (``telemetry.beat``).

``worker_init``, ``worker_ready`` and ``worker_shutdown`` are filtered on
``sender.app``. With ``TELEMETRY_ENABLED=false`` a worker starts poison safety
only. ``uninstall`` stops a worker still running, then undoes ``install``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from celery import Celery
from celery import current_app as celery_current_app
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from prometheus_client import CollectorRegistry

from telemetry import receivers
from telemetry.deadletters.records import app_deadletter_key
from telemetry.extensions import Extensions, ExtensionsSource, resolve
from telemetry.settings import ConfigError, TelemetrySettings, read_settings
from telemetry.tracing.service import Service
from telemetry.wiring.assembly import app_concerns, worker_concerns
from telemetry.wiring.concern import Concerns
from telemetry.wiring.context import WorkerContext


@dataclass
class Installation:
    """One installed app: what ``install`` was given and built, and its worker while it runs."""

    app: Celery
    extensions: ExtensionsSource | None
    #: What ``install`` installed; ``uninstall`` undoes it.
    concerns: Concerns
    #: The spans' and OTLP metrics' service defaults, as given (``telemetry.tracing.service``).
    service: Service
    poison_safety: bool = True
    #: Every task that fails for good is kept (``telemetry.failed``).
    exhausted: bool = False
    #: The app's concerns and the worker's, from ``worker_init`` to ``worker_shutdown``.
    worker: Concerns | None = None
    #: The worker's main process.
    worker_pid: int | None = None

    def stop_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()


_installed: dict[int, Installation] = {}


def install(
    app: Celery,
    registry: CollectorRegistry | None = None,
    *,
    extensions: ExtensionsSource | None = None,
    poison_safety: bool = True,
    exhausted: bool = False,
    service_name: str | None = None,
    service_version: str | None = None,
) -> None:
    """Telemetry for ``app``, in whatever process this is; a second call for it is a no-op.

    ``registry`` receives ``celery_task_published_total`` in a process that only
    publishes (prometheus-client's default registry if None); a worker serves
    a registry of its own. ``extensions``: what the app adds (``telemetry.extensions``).
    ``poison_safety``: what the app's worker cannot run is dead-lettered, not fatal
    (``telemetry.deadletters.safety``); it registers the validating Redis transport
    for the whole process. ``exhausted``: keep every task that fails for good in the
    exhausted set (``telemetry.failed``), to be requeued or deleted later.
    ``service_name`` and ``service_version``: the defaults of the spans' and OTLP
    metrics' ``service.*``, under ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``;
    the name defaults to the app's main name, else the ``celery -A`` module
    (``telemetry.tracing.service``).
    """
    if id(app) in _installed:
        return
    service = Service(service_name, service_version)
    concerns = Concerns(app_concerns(registry, poison_safety, service))
    concerns.install(app)
    if not _installed:
        receivers.connect(WORKER_RECEIVERS)
    _installed[id(app)] = Installation(app, extensions, concerns, service, poison_safety, exhausted)


def uninstall(app: Celery) -> None:
    """Undo ``install``, stopping the app's worker first if it runs here; a second call is a no-op."""
    installation = _installed.pop(id(app), None)
    if installation is None:
        return
    installation.stop_worker()
    installation.concerns.uninstall(app)
    if not _installed:
        receivers.disconnect(WORKER_RECEIVERS)


def installed(app: Any) -> Installation | None:
    return _installed.get(id(app))


def worker_extensions(installation: Installation) -> Extensions:
    """The app's extensions; with poison safety, the dead-letter list's length is measured
    (``celery_deadletter_size``) unless the app names another list."""
    extensions = resolve(installation.extensions)
    if extensions.deadletter_key is None and installation.poison_safety:
        extensions = replace(extensions, deadletter_key=app_deadletter_key(installation.app))
    return extensions


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    installation = installed(getattr(sender, "app", None))
    if installation is None or installation.worker is not None:
        return
    try:
        settings = read_settings(TelemetrySettings)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    context = WorkerContext.of(
        installation.app,
        settings,
        worker_extensions(installation),
        sender,
        installation.poison_safety,
        installation.exhausted,
        installation.service.for_app(installation.app),
    )
    worker = Concerns(worker_concerns(context, installation.concerns))
    worker.start(sender)
    installation.worker, installation.worker_pid = worker, os.getpid()


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
    if installation is not None:
        installation.stop_worker()


def _on_worker_process_init(**_: Any) -> None:
    installation = installed(celery_current_app._get_current_object())
    if installation is None or installation.worker is None:
        return
    if os.getpid() == installation.worker_pid:
        return  # the solo pool sends this signal from the main process
    # The main process's worker, inherited through fork, becomes this pool process's;
    # no worker_shutdown reaches a pool process, so nothing here stops it again.
    worker, installation.worker = installation.worker, None
    worker.pool_process()


WORKER_RECEIVERS: tuple[receivers.Receiver, ...] = (
    (worker_init, _on_worker_init, "telemetry.worker_init"),
    (worker_ready, _on_worker_ready, "telemetry.worker_ready"),
    (worker_shutting_down, _on_worker_shutting_down, "telemetry.worker_shutting_down"),
    (worker_shutdown, _on_worker_shutdown, "telemetry.worker_shutdown"),
    (worker_process_init, _on_worker_process_init, "telemetry.worker_process_init"),
)
