"""Every task's Request gets the announcing mixin while a worker runs, and its own back after.

    classes = RequestClasses(app, record_args=False)
    classes.start(worker)   # worker_init: before the consumer builds its strategies
    classes.stop()          # worker_shutdown: each task's Request as it was

At ``start`` each registered task's ``Request`` becomes
``with_telemetry(<its Request>)`` (``telemetry.delivery.request``); Celery reads
it when the consumer builds the task's strategy, so a change after that would
not count. ``stop`` puts back what each task had: its own attribute, or none,
so that it reads its class's ``Request`` again. A task whose Request was
replaced again since (by someone else) is left as it is.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.utils.imports import symbol_by_name

from telemetry.delivery.request import with_telemetry
from telemetry.wiring.concern import Concern

#: A task that had no ``Request`` attribute of its own (it read its class's).
_INHERITED = object()


class RequestClasses(Concern):
    def __init__(self, app: Celery, record_args: bool) -> None:
        """``record_args``: ``TRACE_TASK_ARGS``, kept by the combined classes."""
        self.app = app
        self.record_args = record_args
        #: (task, what it had, what it got), in the order they were swapped.
        self._swapped: list[tuple[Task, Any, type]] = []

    def start(self, worker: Any) -> None:
        for task in self.app.tasks.values():
            own = vars(task).get("Request", _INHERITED)
            combined = with_telemetry(symbol_by_name(task.Request), self.record_args)
            task.Request = combined
            self._swapped.append((task, own, combined))

    def stop(self) -> None:
        for task, own, combined in reversed(self._swapped):
            if vars(task).get("Request") is not combined:
                continue
            if own is _INHERITED:
                del task.Request
            else:
                task.Request = own
        self._swapped.clear()
