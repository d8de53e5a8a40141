"""The Request mixin that announces every delivery's life, exactly once, to the observers.

    Request = with_telemetry(SomeRequestClass, record_args=False)   # what a worker does per task

On a worker's ``worker_init``, each registered task's ``Request`` becomes
:class:`TelemetryRequest` combined with that task's own Request class, before
the consumer builds its strategies, and at ``worker_shutdown`` it is the task's
own again (``telemetry.delivery.request_classes``). An app may also subclass
the mixin itself (the jobpilot worker's Request does).

A delivery is announced as received when its Request is built, as started when
the pool accepts it, and as finished exactly once, whichever of Celery's
callbacks gets there first (a hard time limit, for instance, reaches both
``on_timeout`` and ``on_failure``). ``create_request_cls`` builds a per-task
subclass whose ``on_success`` replaces ours, so ``__init_subclass__`` wraps
that generated method instead.

The outcome rules (``_outcome_of``) follow Celery's own handling: a retry,
explicit or after a lost pool process, is ``retried``; ``Reject(requeue=True)``,
a hard time limit whose message Celery requeues (``acks_late`` without
``acks_on_timeout``) and a delivery left unacked for redelivery are
``requeued``; ``Ignore`` is ``succeeded``; a :class:`Refused` request (failed by
the worker before the pool ran it, and dead-lettered) is ``rejected``.

Celery prints ``argsrepr``/``kwargsrepr`` in its own log lines and ``inspect``
replies; producers that never installed the telemetry send the real arguments
there. Unless ``TRACE_TASK_ARGS=true`` they are replaced by counts here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded
from celery.utils.serialization import get_pickled_exception
from celery.worker.request import Request

from telemetry.delivery.observers import (
    FAILED,
    OBSERVERS,
    REJECTED,
    REQUEUED,
    RETRIED,
    REVOKED,
    SUCCEEDED,
)
from telemetry.messages import exemplar_trace_id

logger = logging.getLogger("telemetry.delivery")


class Refused(Reject):  # type: ignore[misc]
    """The worker refused the request before the pool ran it; it is recorded as
    Celery records ``Reject(requeue=False)``, and the delivery ends ``rejected``."""

    def __init__(self, reason: str | None = None, requeue: bool = False) -> None:
        # ``requeue`` is accepted (and ignored) so that ``Refused(*exc.args)`` rebuilds
        # it, as Celery does with an exception read back from a result backend.
        super().__init__(reason, requeue=False)

    def __str__(self) -> str:
        return str(self.reason)


def unwrap_exception(exc: BaseException) -> BaseException:
    """The task's exception, as raised, from what the pool hands back."""
    exc = get_pickled_exception(exc)
    return exc.exc if isinstance(exc, ExceptionWithTraceback) else exc


class TelemetryRequest(Request):  # type: ignore[misc]
    """Announces received, started and finished; see the module docstring."""

    #: ``TRACE_TASK_ARGS``: keep the real argsrepr/kwargsrepr.
    record_args: bool = False
    #: When the pool accepted the delivery (``time.monotonic()``); None until then.
    started_at: float | None = None
    #: Where an observer keeps what it found for this delivery (the metrics recorder
    #: keeps its series), so later callbacks need no lookup.
    metrics_series: Any = None
    _outcome: str | None = None
    _requeued: bool = False
    _retried: bool = False
    _trace_id: str | bool | None = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.record_args:
            args, kwargs = getattr(self, "_args", None) or (), getattr(self, "_kwargs", None) or {}
            self._argsrepr = self._request_dict["argsrepr"] = f"<{len(args)} args>"
            self._kwargsrepr = self._request_dict["kwargsrepr"] = f"<{len(kwargs)} kwargs>"
        OBSERVERS.received(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        generated = cls.__dict__.get("on_success")
        if generated is None:
            return

        def on_success(self: TelemetryRequest, failed__retval__runtime: Any, **kw: Any) -> Any:
            result = generated(self, failed__retval__runtime, **kw)
            if not failed__retval__runtime[0]:
                self._finish(SUCCEEDED, None)
            return result

        cls.on_success = on_success

    @property
    def outcome(self) -> str | None:
        """How the delivery ended; None while it has not."""
        return self._outcome

    def trace_id(self) -> str | None:
        """The exemplar's trace id: the run span's, or the ``traceparent``'s, when sampled; once."""
        if self._trace_id is False:
            self._trace_id = exemplar_trace_id(self._request_dict)
        return self._trace_id  # type: ignore[return-value]

    def info(self, safe: bool = False) -> dict[str, Any]:
        """What ``celery inspect active|reserved`` replies: argument counts, not values."""
        info: dict[str, Any] = super().info(safe=safe or not self.record_args)
        return info

    def _finish(self, outcome: str, exception: BaseException | None) -> None:
        if self._outcome is not None:
            return
        self._outcome = outcome
        OBSERVERS.finished(self, outcome, exception)

    def on_accepted(self, pid: int, time_accepted: float) -> None:
        super().on_accepted(pid, time_accepted)
        if self._outcome is not None:
            return  # forgotten on a connection loss (``forgotten``): it has ended here
        self.started_at = time.monotonic()
        OBSERVERS.started(self)

    def forgotten(self) -> None:
        """Celery forgets this delivery, received and not started, on a lost connection:
        its message comes back as a redelivery (``telemetry.delivery.dropped``)."""
        self._finish(REQUEUED, None)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if self._already_cancelled:
            # Cancelled on connection loss: its pool process was terminated and its
            # message is left unacked for redelivery. A time limit that fires for
            # it afterwards must not record a failure and acknowledge the message.
            return
        super().on_timeout(soft, timeout)
        if not soft:
            # Celery acknowledges it, or requeues it (acks_late without acks_on_timeout).
            self._finish(REQUEUED if self._requeued else FAILED, TimeLimitExceeded(timeout))

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
        if self._retried or isinstance(exc, Retry):
            return RETRIED
        if isinstance(exc, Refused):
            return REJECTED
        if self._requeued or (isinstance(exc, Reject) and exc.requeue):
            return REQUEUED
        if isinstance(exc, Ignore):
            return SUCCEEDED
        if (
            isinstance(exc, WorkerLostError | SystemExit | KeyboardInterrupt)
            and not self.acknowledged
        ):
            # Left unacked: the broker redelivers it.
            return REQUEUED
        return FAILED

    def reject(self, requeue: bool = False) -> None:
        self._requeued = self._requeued or requeue
        super().reject(requeue=requeue)

    def _retry_worker_lost(self, exc: BaseException, exc_info: Any) -> bool:
        self._retried = super()._retry_worker_lost(exc, exc_info)
        return self._retried

    def _announce_revoked(self, reason: str, terminated: bool, signum: Any, expired: bool) -> None:
        super()._announce_revoked(reason, terminated, signum, expired)
        self._finish(REVOKED, None)

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
        self._finish(REQUEUED, None)


_combined: dict[tuple[type, bool], type[TelemetryRequest]] = {}


def with_telemetry(base: type, record_args: bool) -> type[TelemetryRequest]:
    """``base`` (a Celery Request class) with the mixin, and ``TRACE_TASK_ARGS`` set; cached."""
    key = (base, record_args)
    combined = _combined.get(key)
    if combined is None:
        bases = (base,) if issubclass(base, TelemetryRequest) else (TelemetryRequest, base)
        combined = _combined[key] = type(base.__name__, bases, {"record_args": record_args})
    return combined
