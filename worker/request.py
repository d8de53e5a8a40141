"""The worker's Request: dead letters (see ``worker.deadletters.request``) plus lifecycle events.

Every delivery that becomes a Request is announced to ``worker.lifecycle``
observers as received when it is built. It ends in exactly one outcome, announced
once, whichever of Celery's callbacks gets there first (a hard time limit, for
instance, reaches both ``on_timeout`` and ``on_failure``).

``create_request_cls`` builds a per-task subclass whose ``on_success`` replaces
ours, so ``__init_subclass__`` wraps that generated method instead.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.exceptions import WorkerLostError
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded

from worker import lifecycle
from worker.deadletters.request import DeadLetteringRequest, unwrap_exception

logger = logging.getLogger("worker.request")


class JobpilotRequest(DeadLetteringRequest):
    _jp_outcome: str | None = None
    _jp_requeued: bool = False
    _jp_retried: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Celery prints argsrepr/kwargsrepr in its own log lines (a request's
        # repr) and in `inspect` replies. Producers that never called
        # telemetry.install() send the real arguments there: replace them here.
        if not self.app.conf.jobpilot_settings.trace_task_args:
            args, kwargs = getattr(self, "_args", None) or (), getattr(self, "_kwargs", None) or {}
            self._argsrepr = self._request_dict["argsrepr"] = f"<{len(args)} args>"
            self._kwargsrepr = self._request_dict["kwargsrepr"] = f"<{len(kwargs)} kwargs>"
        for observer in lifecycle.observers:
            observer.on_received(self)

    def info(self, safe: bool = False) -> dict[str, Any]:
        """What ``celery inspect active|reserved`` replies: argument counts, not values."""
        info: dict[str, Any] = super().info(
            safe=safe or not self.app.conf.jobpilot_settings.trace_task_args
        )
        return info

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        generated = cls.__dict__.get("on_success")
        if generated is None:
            return

        def on_success(self: JobpilotRequest, failed__retval__runtime: Any, **kw: Any) -> Any:
            result = generated(self, failed__retval__runtime, **kw)
            if not failed__retval__runtime[0]:
                self._finish(lifecycle.SUCCEEDED, None)
            return result

        cls.on_success = on_success

    def _finish(self, outcome: str, exception: BaseException | None) -> None:
        if self._jp_outcome is not None:
            return
        self._jp_outcome = outcome
        for observer in lifecycle.observers:
            observer.on_finished(self, outcome, exception)

    def on_accepted(self, pid: int, time_accepted: float) -> None:
        super().on_accepted(pid, time_accepted)
        for observer in lifecycle.observers:
            observer.on_started(self)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if self._already_cancelled:
            # Cancelled on connection loss: its pool process was terminated and its
            # message is left unacked for redelivery. A time limit that fires for
            # it afterwards must not record a failure and acknowledge the message.
            return
        super().on_timeout(soft, timeout)
        if not soft:
            self._finish(lifecycle.FAILED, TimeLimitExceeded(timeout))

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        if self._already_cancelled and isinstance(
            unwrap_exception(exc_info.exception), TimeLimitExceeded
        ):
            return None  # see on_timeout: left unacked for redelivery
        try:
            return super().on_failure(
                exc_info, send_failed_event=send_failed_event, return_ok=return_ok
            )
        finally:
            exc = unwrap_exception(exc_info.exception)
            self._finish(self._outcome_of(exc), exc)

    def _outcome_of(self, exc: BaseException) -> str:
        if self._jp_retried or isinstance(exc, Retry):
            return lifecycle.RETRIED
        if self._jp_requeued or (isinstance(exc, Reject) and exc.requeue):
            return lifecycle.REQUEUED
        if isinstance(exc, Ignore):
            return lifecycle.SUCCEEDED
        if (
            isinstance(exc, WorkerLostError | SystemExit | KeyboardInterrupt)
            and not self.acknowledged
        ):
            # Left unacked: the broker redelivers it.
            return lifecycle.REQUEUED
        return lifecycle.FAILED

    def reject(self, requeue: bool = False) -> None:
        self._jp_requeued = self._jp_requeued or requeue
        super().reject(requeue=requeue)

    def _retry_worker_lost(self, exc: BaseException, exc_info: Any) -> bool:
        self._jp_retried = super()._retry_worker_lost(exc, exc_info)
        return self._jp_retried

    def _announce_revoked(self, reason: str, terminated: bool, signum: Any, expired: bool) -> None:
        super()._announce_revoked(reason, terminated, signum, expired)
        self._finish(lifecycle.REVOKED, None)

    def _announce_cancelled(self, emit_retry: bool = True) -> None:
        try:
            super()._announce_cancelled(emit_retry=emit_retry)
        except Exception as exc:
            # Celery cancels on connection loss, and its "retry" mark goes to the
            # result backend, usually the Redis that just went away. Without this
            # the request is never marked cancelled, and its hard time limit later
            # acknowledges the message as failed: the task would be lost.
            self._already_cancelled = True
            logger.warning(
                "task %s[%s] cancelled on connection loss; left for redelivery "
                "(result backend: %s)",
                self.name,
                self.id,
                type(exc).__name__,
            )
        self._finish(lifecycle.REQUEUED, None)
