"""The spans of a worker's main process and of every process that publishes.

Names, kinds and attributes follow OpenTelemetry's Celery instrumentation and
the messaging semantic conventions (``telemetry.tracing.attributes``):

* ``apply_async/{task}`` (PRODUCER) around a publish; its context travels as the
  W3C ``traceparent`` message header (:class:`ProducerSpans`);
* ``run/{task}`` (CONSUMER) around an execution, in the process that runs it
  (``telemetry.tracing.run_tracer``), under the ``traceparent``'s span; its ids
  are drawn here, in the main process, as each delivery is received
  (:class:`MainProcessSpans`, ``telemetry.tracing.run_ids``); a message requeued
  from the failed-work set has no ``traceparent``, so its run span starts a new
  trace, with one link to the failed run (``x-jobpilot-requeued-from``);
* ``celery.time_limit/{task}``, ``celery.revoked/{task}``,
  ``celery.worker_lost/{task}`` (INTERNAL), recorded by the main process for the
  events that kill or bypass the pool process.

``traceparent`` is parsed and written directly, with no propagator loop on the
hot path. Every entry stored per task is popped when it ends. The readiness
probe's health-check task makes no spans: a trace every probe interval per
worker would bury the real ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from telemetry.delivery.observers import FAILED, REVOKED, DeliveryObserver
from telemetry.messages import HEALTH_TASK, RUN_SPAN, TRACEPARENT_HEADER, format_traceparent
from telemetry.tracing.attributes import (
    DESTINATION,
    MESSAGE_ID,
    OPERATION,
    PROCESS,
    SEND,
    SYSTEM,
    TASK_NAME,
    TASK_OUTCOME,
    TASK_RETRIES,
)
from telemetry.tracing.run_ids import RunIds
from telemetry.tracing.run_ids import remote_parent as parsed_parent

logger = logging.getLogger("telemetry.tracing.handlers")

#: Producer spans whose publish never completed are ended after this many.
MAX_OPEN_PUBLISHES = 1000


def remote_parent(traceparent: Any) -> SpanContext | None:
    """The remote parent in ``00-<trace id>-<span id>-<flags>``, or None if malformed."""
    parsed = parsed_parent(traceparent)
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(flags))


def parent_context(traceparent: Any) -> otel_context.Context | None:
    """A context holding the remote parent, for ``Tracer.start_span``; None if malformed."""
    parent = remote_parent(traceparent)
    return None if parent is None else trace.set_span_in_context(NonRecordingSpan(parent))


class ProducerSpans:
    """``before_task_publish``/``after_task_publish`` receivers."""

    def __init__(self, tracer: trace.Tracer, system: str) -> None:
        self.tracer = tracer
        self.system = system
        self._open: dict[str, trace.Span] = {}

    def on_before_task_publish(
        self,
        sender: Any = None,
        headers: dict[str, Any] | None = None,
        routing_key: str | None = None,
        **_: Any,
    ) -> None:
        if headers is None or sender == HEALTH_TASK:
            return
        task_id = str(headers.get("id") or "")
        span = self.tracer.start_span(
            f"apply_async/{sender}",
            kind=SpanKind.PRODUCER,
            attributes={
                SYSTEM: self.system,
                DESTINATION: routing_key or "",
                OPERATION: SEND,
                MESSAGE_ID: task_id,
                TASK_NAME: str(sender),
                TASK_RETRIES: int(headers.get("retries") or 0),
            },
        )
        span_context = span.get_span_context()
        if span_context.is_valid:
            headers[TRACEPARENT_HEADER] = format_traceparent(
                span_context.trace_id, span_context.span_id, span_context.trace_flags
            )
        if len(self._open) >= MAX_OPEN_PUBLISHES:
            for stale in list(self._open)[: MAX_OPEN_PUBLISHES // 2]:
                self._open.pop(stale).end()
        self._open[task_id] = span

    def on_after_task_publish(self, headers: dict[str, Any] | None = None, **_: Any) -> None:
        span = self._open.pop(str((headers or {}).get("id") or ""), None)
        if span is not None:
            span.end()


class MainProcessSpans(DeliveryObserver):
    """A delivery observer: each run span's ids at receipt, and spans for what the
    pool process cannot record.

    ``run_ids`` draws the ids (``telemetry.tracing.run_ids``); ``before_run``, for
    the solo and threads pools, is called with each received task so that its
    tracer is wrapped before it runs (``telemetry.tracing.run_tracer``).
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        system: str,
        run_ids: RunIds,
        before_run: Callable[[Any], None] | None = None,
    ) -> None:
        self.tracer = tracer
        self.system = system
        self.run_ids = run_ids
        self.before_run = before_run

    def on_received(self, request: Any) -> None:
        """The run span's ids, into the request the pool process gets; anew at every receipt."""
        name = request.type
        if name == HEALTH_TASK:
            return
        fields = request.request_dict
        fields[RUN_SPAN] = self.run_ids(
            fields.get(TRACEPARENT_HEADER), f"run/{name}", lambda: self._attributes(request)
        )
        if self.before_run is not None:
            self.before_run(request.task)

    def _attributes(self, request: Any) -> dict[str, Any]:
        """The run span's attributes, for a sampler that must be asked; the main process's own
        spans start from them."""
        fields = request.request_dict or {}
        delivery = request.delivery_info or {}
        return {
            SYSTEM: self.system,
            DESTINATION: str(delivery.get("routing_key") or ""),
            OPERATION: PROCESS,
            MESSAGE_ID: str(request.id),
            TASK_NAME: str(request.type),
            TASK_RETRIES: int(fields.get("retries") or 0),
        }

    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        if outcome == REVOKED:
            kind = "celery.revoked"
        elif isinstance(exception, TimeLimitExceeded):
            kind = "celery.time_limit"
        elif isinstance(exception, WorkerLostError):
            kind = "celery.worker_lost"
        else:
            return
        headers = request.request_dict or {}
        span = self.tracer.start_span(
            f"{kind}/{request.type}",
            context=parent_context(headers.get(TRACEPARENT_HEADER)),
            kind=SpanKind.INTERNAL,
            attributes={**self._attributes(request), TASK_OUTCOME: outcome},
        )
        if exception is not None and outcome == FAILED:
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        span.end()
