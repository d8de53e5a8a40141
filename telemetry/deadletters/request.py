"""The worker's Request: dead-letters what a task refuses and what kills its pool process.

* ``Reject(requeue=False)`` (raised by a task, or by ``JobpilotTask`` when the
  arguments do not bind) is dead-lettered as ``bad_arguments``; a stock worker
  drops it.
* A lost pool process is retried after ``WORKER_LOST_RETRY_DELAY`` (Celery's own
  retry uses ``default_retry_delay``), within the task's ``max_retries``; once
  they are used up the message is dead-lettered as ``worker_lost`` before Celery
  acknowledges it and records the failure.

Only methods that ``create_request_cls`` does not replace are overridden
(it replaces ``execute_using_pool`` and ``on_success``).
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.exceptions import WorkerLostError
from celery.app.task import Task
from celery.exceptions import Reject, Retry
from celery.signals import task_retry
from celery.worker.request import Request

from telemetry.deadletters.records import Reason
from telemetry.deadletters.writer import DeadLetterWriter
from telemetry.delivery.request import unwrap_exception

logger = logging.getLogger("telemetry.deadletters")

_writers: dict[int, DeadLetterWriter] = {}


def _writer_for(app: Any) -> DeadLetterWriter:
    writer = _writers.get(id(app))
    if writer is None:
        writer = _writers[id(app)] = DeadLetterWriter.for_app(app)
    return writer


class DeadLetteringRequest(Request):  # type: ignore[misc]
    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = unwrap_exception(exc_info.exception)
        if isinstance(exc, Reject) and not exc.requeue:
            self._dead_letter(Reason.BAD_ARGUMENTS)
        elif isinstance(exc, WorkerLostError) and self._worker_lost_retries_exhausted():
            self._dead_letter(Reason.WORKER_LOST)
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )

    def _worker_lost_retries_exhausted(self) -> bool:
        task: Task = self.task
        if not task.retry_on_worker_lost:
            return False
        return task.max_retries is not None and self._context.retries >= task.max_retries

    def _dead_letter(self, reason: Reason) -> None:
        try:
            _writer_for(self._app).write_message(
                self._message, reason, task=self._type, refused=False
            )
        except Exception as exc:
            logger.error(
                "could not dead-letter %s[%s]: %s", self._type, self.id, type(exc).__name__
            )

    def _retry_worker_lost(self, exc: BaseException, exc_info: Any) -> bool:
        """Celery 5.7's method, with ``WORKER_LOST_RETRY_DELAY`` as the countdown."""
        task = self.task
        request = self._context
        settings = self._app.conf.get("jobpilot_settings")
        countdown = getattr(settings, "worker_lost_retry_delay", task.default_retry_delay)
        try:
            task.signature_from_request(
                request, countdown=countdown, retries=request.retries + 1
            ).apply_async()
        except Exception as send_exc:
            logger.error(
                "Failed to retry task %s[%s] after worker was lost: %s",
                self.task_name,
                self.id,
                type(send_exc).__name__,
            )
            return False
        if self.store_errors:
            task.backend.mark_as_retry(self.id, exc, exc_info.traceback, request=request)
        if task.acks_late:
            self.acknowledge()
        reason = Retry(exc=exc, when=countdown)
        task.request_stack.push(request)
        try:
            task.on_retry(exc, self.id, self.args, self.kwargs, exc_info)
            task_retry.send(sender=task, request=request, reason=reason, einfo=exc_info)
        finally:
            task.request_stack.pop()
        return True
