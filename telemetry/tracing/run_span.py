"""The ``run/{task}`` span of a pool process: a recording span made for one task.

    span = start_task_span(provider, send, "run/briefing_compile", parent, attributes)
    token = context.attach(trace.set_span_in_context(span))   # current while the task runs
    ...
    span.end()                                                # one row to the export process

Why not the SDK's ``Span``: it is built for any use, so it validates every
attribute, takes a lock per call and copies itself into a ``ReadableSpan`` at
the end. For the one span every task has, that came to about 197k instructions
(start, attach, outcome, end; callgrind), more than the rest of a no-op task in
a pool process. This span keeps the task's fixed attributes (already valid) in a
dict and ends as a row for ``telemetry.tracing.export.relay``.

What is kept from the SDK: the provider's sampler decides (``OTEL_TRACES_SAMPLER``)
and its id generator names the span, exactly as ``Tracer.start_span`` does;
attributes, events and links added by task code go through the SDK's
``BoundedAttributes`` validation and limits; status and exception events follow
the SDK's rules. The task code sees an ordinary recording span.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, TracerProvider
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AnyValue, Attributes

from telemetry.tracing.export.rows import dropped, row

#: Limits for what task code adds: the SDK's defaults.
MAX_ADDED_ATTRIBUTES = 128
MAX_EVENTS = 128
MAX_LINKS = 128
UNSET = Status(StatusCode.UNSET)
#: The W3C level-2 "random trace id" flag, where this opentelemetry-api has it.
RANDOM_TRACE_ID: int = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)

#: Sends a finished span's row (``telemetry.tracing.export.relay.SpanRelay.send``).
Send = Callable[[Sequence[Sequence[Any]]], None]


class TaskSpan(trace.Span):
    """A recording span whose end sends one row; see the module docstring."""

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, AnyValue],
        scope: InstrumentationScope,
        send: Send | None,
    ) -> None:
        self._name = name
        self._context = context
        self._parent = parent
        self._attributes = attributes
        self._added: BoundedAttributes | None = None
        # As the SDK's span: past the limit, the oldest is dropped and counted.
        self._events: BoundedList[Event] = BoundedList(MAX_EVENTS)
        self._links: BoundedList[Link] = BoundedList(MAX_LINKS)
        self._status = UNSET
        self._scope = scope
        self._send = send
        self._start = time.time_ns()
        self._end: int | None = None

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def record(self, key: str, value: AnyValue) -> None:
        """Set one of the instrumentation's own attributes: a known key and a valid value."""
        if self._end is None:
            self._attributes[key] = value

    def set_attribute(self, key: str, value: AnyValue) -> None:
        if self._end is None:
            if self._added is None:
                self._added = BoundedAttributes(MAX_ADDED_ATTRIBUTES, immutable=False)
            self._added[key] = value

    def set_attributes(self, attributes: Mapping[str, AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end is None:
            self._events.append(
                Event(
                    name,
                    BoundedAttributes(MAX_ADDED_ATTRIBUTES, attributes, immutable=True),
                    timestamp or time.time_ns(),
                )
            )

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        if self._end is None and context.is_valid:
            self._links.append(
                Link(context, BoundedAttributes(MAX_ADDED_ATTRIBUTES, attributes, immutable=True))
            )

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK: OK is final, UNSET is ignored, a description goes with a code."""
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """The SDK's exception event: type, message, stack trace and escaped."""
        module, qualname = type(exception).__module__, type(exception).__qualname__
        event: dict[str, AnyValue] = {
            "exception.type": qualname if module in (None, "builtins") else f"{module}.{qualname}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        event.update(attributes or {})
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time or time.time_ns()
        if self._send is not None and self._context.trace_flags.sampled:
            attributes = self._attributes
            if self._added:
                attributes = {**attributes, **self._added}
            self._send(
                (
                    row(
                        self._name,
                        self._context,
                        self._parent,
                        SpanKind.CONSUMER,
                        self._start,
                        self._end,
                        self._status,
                        attributes,
                        self._events,
                        self._links,
                        self._scope,
                        (dropped(self._added), dropped(self._events), dropped(self._links)),
                    ),
                )
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self.is_recording():
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()


def start_task_span(
    provider: TracerProvider,
    scope: InstrumentationScope,
    send: Send | None,
    name: str,
    parent: SpanContext | None,
    attributes: dict[str, AnyValue],
) -> trace.Span:
    """Sample and name a CONSUMER span as ``Tracer.start_span`` would, under a remote ``parent``.

    Returns a :class:`TaskSpan` when the sampler records it, else a non-recording span
    that still carries the context, so nested work joins the trace either way.
    """
    parent_context: Context | None = None
    if parent is None:
        trace_id = provider.id_generator.generate_trace_id()
    else:
        trace_id = parent.trace_id
        parent_context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
    result = provider.sampler.should_sample(
        parent_context, trace_id, name, SpanKind.CONSUMER, attributes
    )
    sampled = result.decision.is_sampled()  # type: ignore[no-untyped-call]
    flags = TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT
    if RANDOM_TRACE_ID:  # as the SDK marks trace ids that are random
        if parent is None and provider.id_generator.is_trace_id_random():
            flags |= RANDOM_TRACE_ID
        elif parent is not None:
            flags |= parent.trace_flags & RANDOM_TRACE_ID
    context = SpanContext(
        trace_id,
        provider.id_generator.generate_span_id(),
        is_remote=False,
        trace_flags=TraceFlags(flags),
        trace_state=result.trace_state,
    )
    if not result.decision.is_recording():  # type: ignore[no-untyped-call]
        return trace.NonRecordingSpan(context)
    return TaskSpan(name, context, parent, dict(result.attributes or {}), scope, send)
