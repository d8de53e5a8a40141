"""Celery's default retry delay, capped for every task that does not set its own.

    "task_annotations": (DefaultRetryDelay(cap),)     # worker.celery_app.celery_config

Celery retries after ``default_retry_delay`` seconds (180 by default). A delay
must not outlast the visibility timeout, so the default is capped at
``MAX_RETRY_COUNTDOWN``. A ``{"*": {...}}`` annotation would override every
task's attribute, a task's own ``default_retry_delay=0`` included (it would log
"Retry in 180s") and hide a task's own 900 s from the start-up check
(``worker.startup.check_retry_delays``), which must refuse it. This annotation
changes only the tasks that inherit Celery's default.
"""

from __future__ import annotations

from typing import Any

from celery import Task

ATTRIBUTE = "default_retry_delay"


def inherits_celerys_default(task: Any) -> bool:
    """Whether ``task`` (a task class, as Celery annotates, or an instance) takes
    ``default_retry_delay`` from ``celery.Task`` itself."""
    for cls in (task if isinstance(task, type) else type(task)).__mro__:
        if ATTRIBUTE in vars(cls):
            return cls is Task
    return True


class DefaultRetryDelay:
    """A Celery annotation object (``annotate(task)``): the capped default, where it applies."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def annotate(self, task: Any) -> dict[str, Any] | None:
        if inherits_celerys_default(task):
            return {ATTRIBUTE: self.seconds}
        return None

    def annotate_any(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"DefaultRetryDelay({self.seconds:g})"
