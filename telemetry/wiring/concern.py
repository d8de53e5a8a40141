"""The lifecycle contract: every part of the telemetry is a concern that owns its start and its end.

    class Mine(Concern):                  # override only the hooks that matter to you
        def __init__(self, context): ...  # dependencies come in here, never set afterwards
        def start(self, worker): ...
        def stop(self): ...

A concern is to this package what a middleware is to Dramatiq, or an
instrumentor to OpenTelemetry. Its hooks, in the order a process calls them
(``worker`` is Celery's ``WorkController``, ``consumer`` its ``Consumer``):

==================  ======================================  ============================
hook                when                                    process
==================  ======================================  ============================
``install(app)``    ``telemetry.install(app)``              any: producer or worker
``start(worker)``   ``worker_init``, before the pool forks  the worker's main process
``ready(consumer)`` ``worker_ready``: consuming             the worker's main process
``shutting_down()`` ``worker_shutting_down`` (SIGTERM)      the worker's main process
``stop()``          ``worker_shutdown``                     the worker's main process
``pool_process()``  ``worker_process_init``, after the fork each pool process
``uninstall(app)``  ``telemetry.uninstall(app)``            any
==================  ======================================  ============================

So a process goes ``install``, then for each worker run ``start``, ``ready``,
``shutting_down``, ``stop``, then ``uninstall`` (which stops a worker still
running first). Rules every concern keeps:

* ``uninstall`` undoes exactly what ``install`` did, and ``stop`` what ``start``
  and ``ready`` did; nothing is set on another object after construction.
* ``pool_process`` runs in a forked copy of the main process: the first pool
  processes fork after ``start`` and before ``ready``, replacements (a recycled
  or lost pool process) at any time after. It drops what only the main process
  may do (its observers, the listening socket) and starts what a pool process
  needs. Then the copy is forgotten: no ``stop`` follows in that process.
* ``install`` may refuse an app by raising; ``start`` may raise ``SystemExit``
  with one line (a bad variable, a taken port). ``shutting_down``, ``stop`` and
  ``uninstall`` must not break the host: :class:`Concerns` logs a failure there
  and goes on with the others.

Two kinds exist, told apart by when they are built:

* an *app* concern is built by ``install(app)`` from what ``install`` was
  given, and lives until ``uninstall(app)``. It gets every hook, ``start`` to
  ``pool_process`` only while a worker of that app runs with
  ``TELEMETRY_ENABLED`` (the publish hooks; the health task and direct queue);
* a *worker* concern is built at ``worker_init`` from the settings read then
  (``telemetry.wiring.context.WorkerContext``) and from the concerns it depends
  on, and lives until ``worker_shutdown``. ``install``/``uninstall`` never
  reach it (metrics, readiness, tracing, the HTTP endpoints).

Which concerns exist, and in what order, is written in one place:
``telemetry.wiring.assembly``. :class:`Concerns` calls them: ``install``,
``start``, ``ready``, ``shutting_down`` and ``pool_process`` in order, ``stop``
and ``uninstall`` in reverse. If an ``install`` or a ``start`` raises, the
concerns already installed or started are undone before the error goes on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery

logger = logging.getLogger("telemetry.wiring")


class Concern:
    """A part of the telemetry with a lifecycle; every hook does nothing unless overridden."""

    def install(self, app: Celery) -> None:
        """``telemetry.install(app)``: process-wide changes, in any process."""

    def uninstall(self, app: Celery) -> None:
        """``telemetry.uninstall(app)``: exactly what ``install`` changed, undone."""

    def start(self, worker: Any) -> None:
        """``worker_init``: the main process, before the pool forks."""

    def ready(self, consumer: Any) -> None:
        """``worker_ready``: the consumer is running."""

    def shutting_down(self) -> None:
        """``worker_shutting_down``: a warm or cold shutdown has begun."""

    def stop(self) -> None:
        """``worker_shutdown``: what ``start`` and ``ready`` started, stopped."""

    def pool_process(self) -> None:
        """``worker_process_init``: in a pool process, just after the fork."""


class Concerns(Concern):
    """Concerns called in order, and undone in reverse; itself a concern, so they nest."""

    def __init__(self, concerns: Iterable[Concern]) -> None:
        self.concerns = tuple(concerns)

    def install(self, app: Celery) -> None:
        self._forward(lambda concern: concern.install(app), lambda concern: concern.uninstall(app))

    def uninstall(self, app: Celery) -> None:
        for concern in reversed(self.concerns):
            _guarded(concern, "uninstall", functools.partial(concern.uninstall, app))

    def start(self, worker: Any) -> None:
        self._forward(lambda concern: concern.start(worker), lambda concern: concern.stop())

    def ready(self, consumer: Any) -> None:
        for concern in self.concerns:
            concern.ready(consumer)

    def shutting_down(self) -> None:
        for concern in self.concerns:
            _guarded(concern, "shutting_down", concern.shutting_down)

    def stop(self) -> None:
        for concern in reversed(self.concerns):
            _guarded(concern, "stop", concern.stop)

    def pool_process(self) -> None:
        for concern in self.concerns:
            concern.pool_process()

    def _forward(self, do: Callable[[Concern], None], undo: Callable[[Concern], None]) -> None:
        """``do`` each in order; if one raises, ``undo`` those done, in reverse, and re-raise."""
        done: list[Concern] = []
        try:
            for concern in self.concerns:
                do(concern)
                done.append(concern)
        except BaseException:
            for concern in reversed(done):
                _guarded(concern, "undo", functools.partial(undo, concern))
            raise


def _guarded(concern: Concern, hook: str, call: Callable[[], None]) -> None:
    """Telemetry never breaks its host: one concern's failure is logged, and the rest go on."""
    try:
        call()
    except Exception:
        logger.exception("telemetry: %s.%s failed", type(concern).__name__, hook)
