"""The base class of every jobpilot task.

It checks that a message's arguments bind to the task's signature before the
body runs: a message sent by name (``send_task``) or pushed by another producer
skips the producer-side ``typing`` check, and a ``TypeError`` from inside the
body would be indistinguishable from a bug. Arguments that do not bind raise
``Reject(requeue=False)``, which the worker dead-letters as ``bad_arguments``.
"""

from __future__ import annotations

import inspect
from typing import Any

from celery import Task
from celery.exceptions import Reject

REQUEST_CLASS = "worker.request:JobpilotRequest"


class JobpilotTask(Task):  # type: ignore[misc]
    Request = REQUEST_CLASS

    _bind_check: inspect.Signature | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        signature = self._bind_check
        if signature is None:
            signature = self._bind_check = inspect.signature(self.run)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise Reject(f"bad_arguments: {exc}", requeue=False) from None
        return super().__call__(*args, **kwargs)
