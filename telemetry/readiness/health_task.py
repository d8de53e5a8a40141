"""What the ``health_task`` readiness check needs from the app: a direct queue and a task to run.

    concern = HealthTask()
    concern.install(app)     # the app's worker gets its direct queue (celeryd_init)
    concern.start(worker)    # health_check_task is registered, unless the app has one
    concern.stop()           # ... and unregistered
    concern.uninstall(app)   # worker_direct as the app left it

The check (``telemetry.readiness.checks.HealthTaskCheck``) sends the task through
the worker's own direct queue (Celery's ``worker_direct``), so it proves that
this worker, not any worker, consumes and runs. ``worker_direct`` is turned on
at ``celeryd_init``, before the worker picks its queues, unless the app set it
(to False: then there is no such check); it must be set there, not at
``install``, because reading an app's configuration loads it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, Task
from celery.signals import celeryd_init

from telemetry import receivers
from telemetry.messages import HEALTH_TASK
from telemetry.wiring.concern import Concern

WORKER_DIRECT = "worker_direct"


def health_check(task: Task) -> dict[str, Any]:
    """The readiness probe's task: proves a pool process can take and finish work."""
    return {"hostname": task.request.hostname, "pid": os.getpid(), "time": time.time()}


class HealthTask(Concern):
    """One app's direct queue and health task; each is undone only if it was done here."""

    def __init__(self) -> None:
        self.app: Celery | None = None
        self.receivers: tuple[receivers.Receiver, ...] = ()
        self.turned_on = False
        self.registered = False

    def install(self, app: Celery) -> None:
        self.app = app
        # One receiver per app: each turns on its own app's direct queue.
        self.receivers = (
            (celeryd_init, self._on_celeryd_init, f"telemetry.celeryd_init.{id(app)}"),
        )
        receivers.connect(self.receivers)

    def _on_celeryd_init(self, instance: Any = None, **_: Any) -> None:
        app = self.app
        if app is None or not _is_worker_of(instance, app):
            return
        conf = app.conf
        if conf.worker_direct:  # reading a value loads the configuration
            return
        # Celery's own defaults are the last layer; any other layer holding the key was the app's.
        if not any(WORKER_DIRECT in layer for layer in conf.maps[:-1]):
            conf.worker_direct = True
            self.turned_on = True

    def start(self, worker: Any) -> None:
        app = self.app
        if app is not None and HEALTH_TASK not in app.tasks:
            app.task(name=HEALTH_TASK, bind=True, shared=False, ignore_result=True)(health_check)
            self.registered = True

    def stop(self) -> None:
        if self.registered and self.app is not None:
            self.app.tasks.pop(HEALTH_TASK, None)
        self.registered = False

    def uninstall(self, app: Celery) -> None:
        receivers.disconnect(self.receivers)
        # Only the value set here is taken back; a later change by the app stays.
        if self.turned_on and app.conf.changes.get(WORKER_DIRECT) is True:
            del app.conf[WORKER_DIRECT]
        self.turned_on = False
        self.app = None


def _is_worker_of(instance: Any, app: Celery) -> bool:
    """``celeryd_init`` is sent with the hostname; the app is the worker instance's."""
    return getattr(instance, "app", None) is app
