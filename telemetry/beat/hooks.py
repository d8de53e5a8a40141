"""The hooks every beat goes through, installed with ``telemetry.install(app)`` and removed with ``uninstall``.

    BEAT_HOOKS.install(app)     # the first app wraps Service.start and Scheduler.apply_async
    BEAT_HOOKS.uninstall(app)   # the last app puts Celery's own functions back

``Service.start`` runs every beat's loop, whatever its scheduler; each send of
every scheduler goes through ``Scheduler.apply_async`` (RedBeat replaces
``tick`` and skips ``apply_entry``, not this). Both are wrapped at the class
level, and act only for an installed app: a beat of another app runs Celery's
functions untouched. For an installed app, ``Service.start`` first reads the
settings (a bad value is one ``settings:`` line and a non-zero exit) and
starts a :class:`~telemetry.beat.monitor.BeatMonitor`, which then sees each
send of that beat's scheduler; when the loop ends, the monitor stops.

``celery worker -B`` runs beat inside the worker, in a process of its own
that the worker's ``/livez`` cannot see: it is refused with one line
(``celery -A app beat`` is the way to run a watched beat).

Beat is watched on Celery 5.7 and later: the monitor reads what 5.7 added to
beat (its tick stamp, node name and remote-control rule). On Celery 5.6 a beat
runs unwatched, and one line says so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any

import celery
from celery import Celery
from celery.beat import Scheduler, Service
from celery.signals import celeryd_init

from telemetry import receivers
from telemetry.beat.monitor import BeatMonitor
from telemetry.settings import ConfigError, TelemetrySettings, read_settings
from telemetry.wiring.concern import Concern

logger = logging.getLogger("telemetry.beat")

#: The first Celery release whose beat the monitor can read.
WATCHED_SINCE = (5, 7)

EMBEDDED_REFUSED = (
    "telemetry: celery worker -B runs beat inside the worker, where it is not watched: "
    "run it as a process of its own (celery -A {app} beat), or set TELEMETRY_ENABLED=false"
)


class BeatHooks(Concern):
    """The process's beat hooks, whatever the number of installed apps."""

    def __init__(self) -> None:
        self.apps: dict[int, Celery] = {}
        #: The running monitors, by ``id()`` of the scheduler they watch.
        self.monitors: dict[int, BeatMonitor] = {}
        self._originals: dict[tuple[type, str], Any] = {}
        self._wrappers: dict[tuple[type, str], Any] = {}
        self.receivers: tuple[receivers.Receiver, ...] = (
            (celeryd_init, self._on_celeryd_init, "telemetry.beat.celeryd_init"),
        )

    def install(self, app: Celery) -> None:
        if not self.apps:
            self._wrap(Service, "start", self._service_start)
            self._wrap(Scheduler, "apply_async", self._apply_async)
            receivers.connect(self.receivers)
        self.apps[id(app)] = app

    def uninstall(self, app: Celery) -> None:
        if self.apps.pop(id(app), None) is None or self.apps:
            return
        receivers.disconnect(self.receivers)
        for (owner, name), original in self._originals.items():
            if vars(owner).get(name) is self._wrappers[(owner, name)]:
                setattr(owner, name, original)
            else:  # wrapped again by someone else since: theirs stays, and calls ours, which passes
                logger.warning(
                    "telemetry: %s.%s was wrapped after us; left as it is", owner.__name__, name
                )
        self._originals.clear()
        self._wrappers.clear()

    def _wrap(self, owner: type, name: str, hook: Any) -> None:
        original = vars(owner)[name]

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return hook(original, *args, **kwargs)

        self._originals[(owner, name)] = original
        self._wrappers[(owner, name)] = wrapper
        setattr(owner, name, wrapper)

    # the hooks --------------------------------------------------------------------
    def _service_start(self, original: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        monitor = self._monitor_for(service)
        if monitor is None:
            return original(service, *args, **kwargs)
        self.monitors[id(monitor.scheduler)] = monitor
        try:
            return original(service, *args, **kwargs)
        finally:
            self.monitors.pop(id(monitor.scheduler), None)
            try:
                monitor.stop()
            except Exception as exc:
                logger.warning("beat telemetry: stop: %s", type(exc).__name__)

    def _monitor_for(self, service: Any) -> BeatMonitor | None:
        """A started monitor for an installed app's beat; None otherwise, or if telemetry fails."""
        if id(getattr(service, "app", None)) not in self.apps:
            return None
        try:
            settings = read_settings(TelemetrySettings)
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None
        if not (settings.telemetry_enabled and settings.metrics_enabled):
            return None
        if tuple(celery.VERSION[:2]) < WATCHED_SINCE:
            logger.warning(
                "telemetry: beat runs unwatched: watching it needs Celery 5.7 or later, "
                "and this is Celery %s",
                celery.__version__,
            )
            return None
        # Built as Service.start's own first lines would, failing as they would (RedBeat
        # without its Redis): beat's own error, not the telemetry's.
        service.scheduler  # noqa: B018
        monitor = None
        try:
            monitor = BeatMonitor(service, settings)
            monitor.start()
        except SystemExit:
            raise
        except Exception as exc:  # never break beat: it runs unwatched
            logger.error("beat telemetry is off: %s: %s", type(exc).__name__, exc, exc_info=True)
            if monitor is not None:
                with contextlib.suppress(Exception):
                    monitor.stop()
            return None
        return monitor

    def _apply_async(
        self,
        original: Any,
        scheduler: Any,
        entry: Any,
        producer: Any = None,
        advance: bool = True,
        **kwargs: Any,
    ) -> Any:
        monitor = self.monitors.get(id(scheduler))
        if monitor is None:
            return original(scheduler, entry, producer, advance, **kwargs)
        return monitor.send(original, scheduler, entry, producer, advance, **kwargs)

    def _on_celeryd_init(self, instance: Any = None, options: Any = None, **_: Any) -> None:
        app = getattr(instance, "app", None)
        if id(app) not in self.apps or not (options or {}).get("beat"):
            return
        try:
            settings = read_settings(TelemetrySettings)
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None
        if settings.telemetry_enabled:
            raise SystemExit(EMBEDDED_REFUSED.format(app=getattr(app, "main", None) or "app"))


#: The process's hooks.
BEAT_HOOKS = BeatHooks()
