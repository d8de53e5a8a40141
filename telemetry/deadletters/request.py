"""The Request mixin that dead-letters what a worker refuses or cannot finish.

    Request = with_dead_letters(SomeRequestClass, writer, retry_delay)   # per task, at start

``telemetry.deadletters.safety`` gives each task of an app this mixin combined
with the task's own Request class when its worker starts; Celery then builds a
per-task subclass of it (``create_request_cls``).

* A body that kombu decoded but that is not ``[args, kwargs, embed]`` (a msgpack
  or yaml body, which the channel leaves to kombu) is refused while the Request
  is built: :class:`Undeliverable`, which the consumer dead-letters as ``bad_body``.
* Arguments that do not bind to the task's signature
  (``telemetry.deadletters.arguments``) are refused in the main process, before
  the pool gets the request: dead-lettered as ``bad_arguments``, the failure
  recorded as Celery records a ``Reject`` (result, ``task_failure``, errbacks),
  and the delivery ends ``rejected`` (:class:`~telemetry.delivery.request.Refused`).
* ``Reject(requeue=False)`` raised by a task is dead-lettered as ``bad_arguments``;
  a stock worker drops it.
* A lost pool process is retried after ``WORKER_LOST_RETRY_DELAY`` (Celery's own
  retry uses ``default_retry_delay``), within the task's ``max_retries``; once
  they are used up the message is dead-lettered as ``worker_lost`` before Celery
  acknowledges it and records the failure.

Only methods that ``create_request_cls`` does not replace are overridden (it
replaces ``execute_using_pool`` and ``on_success``); ``__init_subclass__`` wraps
the generated ``execute_using_pool`` instead.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionInfo
from billiard.exceptions import WorkerLostError
from celery.app.task import Task
from celery.exceptions import InvalidTaskError, Reject, Retry, TaskRevokedError
from celery.signals import task_retry
from celery.worker.request import Request

from telemetry.deadletters.arguments import arguments_problem
from telemetry.deadletters.records import Reason
from telemetry.deadletters.validation import is_task_body
from telemetry.deadletters.writer import DeadLetterWriter
from telemetry.delivery.request import Refused, unwrap_exception

logger = logging.getLogger("telemetry.deadletters")

_writers: dict[int, DeadLetterWriter] = {}


def _writer_for(app: Any) -> DeadLetterWriter:
    writer = _writers.get(id(app))
    if writer is None:
        writer = _writers[id(app)] = DeadLetterWriter.for_app(app)
    return writer


class Undeliverable(InvalidTaskError):  # type: ignore[misc]
    """No Request can be built from the message; the consumer dead-letters it for ``reason``."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


class NotSubmitted(TaskRevokedError):  # type: ignore[misc]
    """Raised by ``execute_using_pool`` once the request was refused and finished.

    The worker then frees the pool slot it held for the request, as it does for
    a request found revoked at that point (``WorkController._process_task``).
    """


class DeadLetteringRequest(Request):  # type: ignore[misc]
    #: The worker's writer (``with_dead_letters``); built per app when unset.
    dead_letters: DeadLetterWriter | None = None
    #: ``WORKER_LOST_RETRY_DELAY``; None keeps Celery's ``default_retry_delay``.
    worker_lost_retry_delay: float | None = None

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        body = kwargs.get("body") if kwargs.get("decoded") else message.payload
        if not is_task_body(body):
            raise Undeliverable(Reason.BAD_BODY, "the body is not [args, kwargs, embed]")
        super().__init__(message, *args, **kwargs)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        generated = cls.__dict__.get("execute_using_pool")
        if generated is None:
            return

        def execute_using_pool(self: DeadLetteringRequest, pool: Any, **kw: Any) -> Any:
            problem = arguments_problem(self._task, self._args, self._kwargs)
            if problem is None or self.revoked():
                return generated(self, pool, **kw)
            self._refuse(f"{Reason.BAD_ARGUMENTS.value}: {problem}")
            raise NotSubmitted(self.id)

        cls.execute_using_pool = execute_using_pool

    def _refuse(self, why: str) -> None:
        """Fail the request here as the pool would report a ``Reject`` (dead-lettered
        by ``on_failure``), without it ever reaching the pool.

        Recording the failure may fail (a result backend that is down); the message
        is rejected all the same, since its dead letter was written first.
        """
        try:
            raise Refused(why)
        except Refused:
            exc_info = ExceptionInfo()
        try:
            self.on_failure(exc_info)
        except Exception as exc:
            logger.error(
                "could not record the refusal of %s[%s]: %s",
                self._type,
                self.id,
                type(exc).__name__,
            )
            self.reject(requeue=False)

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
            (self.dead_letters or _writer_for(self._app)).write_message(
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
        countdown = self.worker_lost_retry_delay
        if countdown is None:
            countdown = task.default_retry_delay
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


def with_dead_letters(
    base: type, writer: DeadLetterWriter, worker_lost_retry_delay: float | None
) -> type[DeadLetteringRequest]:
    """``base`` (a Celery Request class) with the mixin, writing to ``writer``."""
    bases = (base,) if issubclass(base, DeadLetteringRequest) else (DeadLetteringRequest, base)
    attributes = {"dead_letters": writer, "worker_lost_retry_delay": worker_lost_retry_delay}
    combined: type[DeadLetteringRequest] = type(base.__name__, bases, attributes)
    return combined
