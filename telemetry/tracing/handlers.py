"""One span per publish and one per execution, from a lean pair of signal handlers.

Names, kinds and attributes follow OpenTelemetry's Celery instrumentation and
the messaging semantic conventions:

* ``apply_async/{task}`` (PRODUCER) around a publish; its context travels as the
  W3C ``traceparent`` message header;
* ``run/{task}`` (CONSUMER) around an execution in a pool process, parented by
  that header and current while the task runs, so what the task does (database
  calls, nested tasks) joins the same trace; a message requeued from the
  failed-work set has no ``traceparent``, so its run span starts a new trace,
  with one link to the failed run (``x-jobpilot-requeued-from``);
* ``celery.time_limit/{task}``, ``celery.revoked/{task}``,
  ``celery.worker_lost/{task}`` (INTERNAL), recorded by the main process for the
  events that kill or bypass the pool process.

Every span carries a fixed set of attributes: ``messaging.system`` (the broker,
from the app's kombu driver: ``redis``, ``rabbitmq``, ``aws_sqs``; the
semantic conventions do not take ``celery`` as a messaging system),
``messaging.destination.name``, ``messaging.operation.type``,
``messaging.message.id``, ``celery.task.name``, ``celery.task.retries`` and, on
consumer and main-process spans, ``celery.task.outcome``. Arguments are
recorded only with ``TRACE_TASK_ARGS=true``, on ``run`` spans, as
``celery.task.args``/``celery.task.kwargs`` truncated to 256 characters. ``traceparent`` is parsed and written directly, with no propagator
loop on the hot path. Every entry stored per task is popped when it ends. The
readiness probe's health-check task makes no spans: a trace every probe
interval per worker would bury the real ones.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
    MessagingSystemValues,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from telemetry.delivery.observers import FAILED, RETRIED, REVOKED, SUCCEEDED, DeliveryObserver
from telemetry.messages import (
    HEALTH_TASK,
    REQUEUED_FROM_HEADER,
    TRACEPARENT_HEADER,
    format_traceparent,
    parse_traceparent,
)
from telemetry.tracing.run_span import RANDOM_TRACE_ID, Send, TaskSpan, start_task_span

logger = logging.getLogger("telemetry.tracing.handlers")

SYSTEM = MESSAGING_SYSTEM
DESTINATION = MESSAGING_DESTINATION_NAME
OPERATION = MESSAGING_OPERATION_TYPE
MESSAGE_ID = MESSAGING_MESSAGE_ID
SEND = MessagingOperationTypeValues.SEND.value
PROCESS = MessagingOperationTypeValues.PROCESS.value
#: ``messaging.system`` by kombu driver type; any other driver is named as kombu names it.
SYSTEMS = {
    "redis": "redis",
    "amqp": MessagingSystemValues.RABBITMQ.value,
    "sqs": MessagingSystemValues.AWS_SQS.value,
}
TASK_NAME = "celery.task.name"
TASK_RETRIES = "celery.task.retries"
TASK_OUTCOME = "celery.task.outcome"
#: Only with TRACE_TASK_ARGS=true, truncated to MAX_ARGS_LENGTH characters.
TASK_ARGS = "celery.task.args"
TASK_KWARGS = "celery.task.kwargs"
MAX_ARGS_LENGTH = 256
INSTRUMENTATION = "jobpilot.telemetry"
#: Producer spans whose publish never completed are ended after this many.
MAX_OPEN_PUBLISHES = 1000
#: Sampled, and (W3C level 2) a random trace id.
KNOWN_FLAGS = TraceFlags.SAMPLED | RANDOM_TRACE_ID
STATE_OUTCOMES = {"SUCCESS": SUCCEEDED, "FAILURE": FAILED, "RETRY": RETRIED, "IGNORED": SUCCEEDED}


def messaging_system(driver_type: str) -> str:
    """The ``messaging.system`` of a kombu transport's ``driver_type``."""
    return SYSTEMS.get(driver_type, driver_type)


def remote_parent(traceparent: Any) -> SpanContext | None:
    """The remote parent in ``00-<trace id>-<span id>-<flags>``, or None if malformed."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    if not trace_id or not span_id:
        return None
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & KNOWN_FLAGS)
    )


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


class ConsumerSpans:
    """``task_prerun``/``task_postrun`` (+ failure, retry) receivers in a pool process.

    The ``run`` span is a :class:`telemetry.tracing.run_span.TaskSpan`, sampled by the
    provider's sampler and sent with ``send`` when it ends (None: not exported).
    """

    def __init__(
        self, provider: TracerProvider, send: Send | None, system: str, record_args: bool = False
    ) -> None:
        self.provider = provider
        self.system = system
        self.send = send
        self.record_args = record_args
        self.scope = InstrumentationScope(INSTRUMENTATION)
        #: task id -> [span, context token, outcome set by a failure or retry]
        self._running: dict[str, list[Any]] = {}

    def on_task_prerun(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task_id is None or task is None or task.name == HEALTH_TASK:
            return
        request = task.request
        delivery = getattr(request, "delivery_info", None) or {}
        span = start_task_span(
            self.provider,
            self.scope,
            self.send,
            f"run/{task.name}",
            remote_parent(getattr(request, TRACEPARENT_HEADER, None)),
            {
                SYSTEM: self.system,
                DESTINATION: str(delivery.get("routing_key") or ""),
                OPERATION: PROCESS,
                MESSAGE_ID: task_id,
                TASK_NAME: task.name,
                TASK_RETRIES: int(getattr(request, "retries", 0) or 0),
            },
        )
        requeued_from = getattr(request, REQUEUED_FROM_HEADER, None)
        if requeued_from is not None:
            failed_run = remote_parent(requeued_from)
            if failed_run is not None:
                span.add_link(failed_run)
        if self.record_args:
            span.set_attribute(TASK_ARGS, repr(getattr(request, "args", None))[:MAX_ARGS_LENGTH])
            span.set_attribute(
                TASK_KWARGS, repr(getattr(request, "kwargs", None))[:MAX_ARGS_LENGTH]
            )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._running[task_id] = [span, token, None]

    def on_task_failure(
        self, task_id: str | None = None, exception: BaseException | None = None, **_: Any
    ) -> None:
        entry = self._running.get(task_id or "")
        if entry is None or exception is None:
            return
        span = entry[0]
        span.record_exception(exception)
        span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        entry[2] = FAILED

    def on_task_retry(self, request: Any = None, reason: Any = None, **_: Any) -> None:
        entry = self._running.get(str(getattr(request, "id", "") or ""))
        if entry is not None:
            entry[2] = RETRIED
            if reason is not None:
                entry[0].add_event("retry", {"reason": type(reason).__name__})

    def on_task_postrun(
        self, task_id: str | None = None, state: str | None = None, **_: Any
    ) -> None:
        entry = self._running.pop(task_id or "", None)
        if entry is None:
            return
        span, token, outcome = entry
        if isinstance(span, TaskSpan):
            span.record(TASK_OUTCOME, outcome or STATE_OUTCOMES.get(str(state), FAILED))
        span.end()
        otel_context.detach(token)


class MainProcessSpans(DeliveryObserver):
    """A delivery observer: spans for what the pool process cannot record."""

    def __init__(self, tracer: trace.Tracer, system: str) -> None:
        self.tracer = tracer
        self.system = system

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
        delivery = request.delivery_info or {}
        span = self.tracer.start_span(
            f"{kind}/{request.type}",
            context=parent_context(headers.get(TRACEPARENT_HEADER)),
            kind=SpanKind.INTERNAL,
            attributes={
                SYSTEM: self.system,
                DESTINATION: str(delivery.get("routing_key") or ""),
                OPERATION: PROCESS,
                MESSAGE_ID: str(request.id),
                TASK_NAME: str(request.type),
                TASK_RETRIES: int(headers.get("retries") or 0),
                TASK_OUTCOME: outcome,
            },
        )
        if exception is not None and outcome == FAILED:
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        span.end()
