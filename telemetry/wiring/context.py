"""What every concern of one worker may read, fixed at ``worker_init``.

    context = WorkerContext.of(app, settings, extensions, worker)   # SystemExit on a conflict

Built once per worker, before any worker concern (``telemetry.wiring.assembly``),
from the app, the settings read at that moment, the app's extensions and
Celery's worker. A value, not a service: it holds no connection, thread or socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool

from telemetry.broker import REDIS_DRIVERS, driver_type, visibility_timeout
from telemetry.extensions import Extensions
from telemetry.settings import TelemetrySettings, required_names
from telemetry.tracing.attributes import messaging_system
from telemetry.tracing.service import Service


@dataclass(frozen=True)
class WorkerContext:
    app: Celery
    settings: TelemetrySettings
    extensions: Extensions
    #: The worker's node name (``celery@host``); its direct queue is named after it.
    hostname: str
    #: Tasks run in forked pool processes (prefork), not in the main process (solo, threads).
    forks: bool
    #: The app keeps the worker's direct queue, so readiness has its ``health_task`` check.
    health_task: bool
    #: kombu's driver type of the app's broker: ``redis``, ``amqp``, ``sqs``, ...
    driver: str
    #: What the worker cannot run is dead-lettered (``install(app, poison_safety=True)``).
    poison_safety: bool = True
    #: Every task that fails for good is kept (``install(app, exhausted=True)``).
    exhausted: bool = False
    #: The resource's service defaults, resolved for the app (``telemetry.tracing.service``).
    service: Service = field(default_factory=Service)

    @classmethod
    def of(
        cls,
        app: Celery,
        settings: TelemetrySettings,
        extensions: Extensions,
        worker: Any,
        poison_safety: bool = True,
        exhausted: bool = False,
        service: Service | None = None,
    ) -> WorkerContext:
        """The context of ``worker`` (Celery's ``WorkController``, as ``worker_init`` sends it).

        Raises:
            SystemExit: ``READINESS_REQUIRED`` names ``health_task`` and the app
            turned ``worker_direct`` off, which that check needs.
        """
        health_task = bool(app.conf.worker_direct)
        required = settings.readiness_required if settings.telemetry_enabled else None
        if not health_task and "health_task" in required_names(required or ""):
            raise SystemExit(
                "settings: READINESS_REQUIRED: health_task needs the worker's direct queue, "
                "and the app sets worker_direct=False"
            )
        return cls(
            app=app,
            settings=settings,
            extensions=extensions,
            hostname=str(getattr(worker, "hostname", "") or ""),
            forks=forks_pool_processes(worker),
            health_task=health_task,
            driver=driver_type(app),
            poison_safety=poison_safety,
            exhausted=exhausted,
            service=service or Service(),
        )

    @property
    def redis(self) -> bool:
        """A Redis broker: depth, age and the broker check can be read from it."""
        return self.driver in REDIS_DRIVERS

    @property
    def system(self) -> str:
        """``messaging.system`` on spans."""
        return messaging_system(self.driver)

    @property
    def visibility_timeout(self) -> float | None:
        """Only Redis restores what stays unacked past a visibility timeout; None elsewhere."""
        return visibility_timeout(self.app) if self.redis else None

    @property
    def polls_queues(self) -> bool:
        """Depth and age are read here unless QUEUE_POLL_ENABLED=false (the broker exporter reads them)."""
        return self.redis and self.settings.queue_poll_enabled


def forks_pool_processes(worker: Any) -> bool:
    pool_cls = getattr(worker, "pool_cls", None)
    if pool_cls is None:
        return True
    resolved = get_implementation(pool_cls)
    return isinstance(resolved, type) and issubclass(resolved, PreforkPool)
