"""The worker's Request: dead letters (see ``worker.deadletters.request``) plus lifecycle events.

Every delivery that becomes a Request ends in exactly one outcome, announced to
``worker.lifecycle`` observers once, whichever of Celery's callbacks gets there
first (a hard time limit, for instance, reaches both ``on_timeout`` and
``on_failure``).

``create_request_cls`` builds a per-task subclass whose ``on_success`` replaces
ours, so ``__init_subclass__`` wraps that generated method instead.
"""

from __future__ import annotations

from typing import Any

from billiard.exceptions import WorkerLostError
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded

from worker import lifecycle
from worker.deadletters.request import DeadLetteringRequest, unwrap_exception


class JobpilotRequest(DeadLetteringRequest):
    _jp_outcome: str | None = None
    _jp_requeued: bool = False
    _jp_retried: bool = False

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
        super().on_timeout(soft, timeout)
        if not soft:
            self._finish(lifecycle.FAILED, TimeLimitExceeded(timeout))

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
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
        super()._announce_cancelled(emit_retry=emit_retry)
        self._finish(lifecycle.REQUEUED, None)
