"""Which failures are exhausted, and the record each one becomes.

A delivery is exhausted when its final outcome is ``failed`` and its message
is acknowledged, not requeued (Celery 5.7, ``celery/app/trace.py`` and
``Request.on_failure``):

* In a pool process, ``handle_failure`` runs for an exception that is not
  ``Reject``, ``Ignore`` or ``Retry``: retries are used up (autoretry re-raises
  the original exception; ``retry()`` without ``exc`` raises
  ``MaxRetriesExceededError``) or there were none. The main process then
  acknowledges the message, or rejects it without requeueing when
  ``acks_on_failure`` is off: either way nothing runs it again. The exceptions
  it treats otherwise are left out here (:func:`exhausted_in_pool`).
* A hard time limit kills the pool process, so only the main process knows of
  it, and it requeues the message when ``acks_late`` is on and
  ``acks_on_timeout`` off. The delivery observers hear of it as ``failed``
  only when it was acknowledged (``telemetry.delivery.request``).

``Reject`` and a pool process lost past its retries are dead letters
(``telemetry.deadletters``).

A pool process writes its record from what it holds: the task's request
context carries the message's headers and properties, and its arguments and
canvas fields, from which the envelope is encoded again as kombu's Redis
transport stores it. The main process keeps the envelope as kombu read it.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
from typing import Any

from billiard.exceptions import Terminated, WorkerLostError
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded
from kombu.serialization import dumps as kombu_dumps
from kombu.serialization import prepare_accept_content
from opentelemetry import trace

from telemetry.deadletters.validation import JSON_CONTENT_TYPE
from telemetry.delivery.observers import FAILED
from telemetry.failed.records import EXHAUSTED_REASON, FailedRecord, Kind
from telemetry.messages import HEALTH_TASK

logger = logging.getLogger("telemetry.failed")

#: Not the task's failure: Celery's own flow, a lost or stopped process, or a memory error.
NOT_EXHAUSTED = (
    Reject,
    Ignore,
    Retry,
    WorkerLostError,
    Terminated,
    SystemExit,
    KeyboardInterrupt,
    MemoryError,
)
#: What Celery adds to a message's headers on the way into a task's request context
#: (``Request.__init__``, ``fast_trace_task``, ``Context.__init__`` and ``update``).
CONTEXT_KEYS = frozenset(
    {
        "headers",
        "time_limit",
        "soft_time_limit",
        "args",
        "kwargs",
        "properties",
        "reply_to",
        "correlation_id",
        "hostname",
        "delivery_info",
        "is_eager",
        "called_directly",
        "callbacks",
        "errbacks",
        "chain",
        "chord",
    }
)
#: The body's third element: the canvas around the task.
EMBED_KEYS = ("callbacks", "errbacks", "chain", "chord")


def exhausted_in_pool(exception: BaseException) -> bool:
    """Whether a failure the pool process handles is final. Hard time limits are the main
    process's to judge, as it decides whether their message is requeued."""
    return not isinstance(exception, (*NOT_EXHAUSTED, TimeLimitExceeded))


def exhausted_outcome(outcome: str, exception: BaseException | None) -> bool:
    """Whether a delivery that ended with ``outcome`` (main process) is exhausted."""
    return outcome == FAILED and exception is not None and not isinstance(exception, NOT_EXHAUSTED)


def argument_counts(args: Any, kwargs: Any) -> tuple[int, int]:
    return (
        len(args) if isinstance(args, list | tuple) else 0,
        len(kwargs) if isinstance(kwargs, dict) else 0,
    )


def _run_span_ids() -> tuple[str | None, str | None]:
    """The current (run) span's trace and span ids, when it is sampled."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None, None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def body_serializer(app: Any) -> str:
    """JSON when the app accepts it (Celery's default), else the app's task serializer:
    the request context no longer says which content type the message came in."""
    accept = prepare_accept_content(app.conf.accept_content)  # type: ignore[no-untyped-call]
    if accept is None or JSON_CONTENT_TYPE in accept:
        return "json"
    return str(app.conf.task_serializer)


def envelope_from_context(fields: dict[str, Any], serializer: str = "json") -> str:
    """The message as kombu's Redis transport stores it, from a task's request context.

    The body is ``[args, kwargs, embed]`` encoded again with kombu's ``serializer``,
    and base64-encoded when the properties say so (kombu's Redis default).
    """
    headers = {
        key: value
        for key, value in fields.items()
        if key not in CONTEXT_KEYS and not key.startswith("_")
    }
    properties = dict(fields.get("properties") or {})
    embed = {key: fields[key] for key in EMBED_KEYS if key in fields}
    body = [list(fields.get("args") or ()), dict(fields.get("kwargs") or {}), embed]
    content_type, content_encoding, data = kombu_dumps(body, serializer=serializer)  # type: ignore[no-untyped-call]
    encoded = data.encode("utf-8") if isinstance(data, str) else data
    if properties.get("body_encoding") == "base64":
        text = base64.b64encode(encoded).decode("ascii")
    else:
        text = encoded.decode("utf-8")
    envelope = {
        "body": text,
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": properties,
    }
    text = kombu_dumps(envelope, serializer="json")[2]  # type: ignore[no-untyped-call]
    return str(text)


def _traceback_text(exception: BaseException, einfo: Any) -> str:
    text = getattr(einfo, "traceback", None)
    if isinstance(text, str) and text:
        return text
    return "".join(traceback.format_exception(exception))


def record_in_pool(task: Any, exception: BaseException, einfo: Any) -> FailedRecord | None:
    """The record of a task failing in this process (``task_failure`` inside the trace),
    or None when the failure is not exhausted or not the trace's own."""
    request = task.request
    if request.called_directly or request.is_eager or task.name == HEALTH_TASK:
        return None  # the worker's own failure handlers, a direct call, or apply(): no message
    if not exhausted_in_pool(exception):
        return None
    fields = dict(vars(request))
    delivery = fields.get("delivery_info") or {}
    trace_id, span_id = _run_span_ids()
    try:
        raw = envelope_from_context(fields, body_serializer(task.app))
    except Exception as exc:  # an argument kombu's JSON cannot encode: keep the rest
        logger.warning("%s[%s]: message not kept: %s", task.name, request.id, type(exc).__name__)
        raw = ""
    return FailedRecord.new(
        Kind.EXHAUSTED,
        queue=str(delivery.get("routing_key") or "unknown"),
        task=task.name,
        task_id=request.id,
        reason=EXHAUSTED_REASON,
        raw=raw,
        retries=int(request.retries or 0),
        exception=type(exception).__name__,
        message=str(exception),
        traceback=_traceback_text(exception, einfo),
        trace_id=trace_id,
        span_id=span_id,
        hostname=request.hostname,
        arguments=argument_counts(fields.get("args"), fields.get("kwargs")),
    )


def record_in_main(request: Any, exception: BaseException) -> FailedRecord:
    """The record of an exhausted delivery the main process judged (a hard time limit).

    Its run span ended with its pool process, unsent: the record names that
    span's trace (drawn when the delivery was received), when it is sampled,
    and no span.
    """
    message = request.message
    raw = getattr(message, "_raw", None)
    headers = request.request_dict or {}
    delivery = request.delivery_info or {}
    retries = headers.get("retries")
    return FailedRecord.new(
        Kind.EXHAUSTED,
        queue=str(delivery.get("routing_key") or "unknown"),
        task=request.type,
        task_id=request.id,
        reason=EXHAUSTED_REASON,
        raw=json.dumps(raw) if raw is not None else "",
        retries=retries if isinstance(retries, int) else 0,
        exception=type(exception).__name__,
        message=str(exception),
        traceback="".join(traceback.format_exception_only(exception)),
        trace_id=request.trace_id(),
        hostname=request.hostname,
        arguments=argument_counts(headers.get("args"), headers.get("kwargs")),
    )
