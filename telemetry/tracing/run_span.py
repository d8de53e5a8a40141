"""The ``run/{task}`` span in the process that runs the task: built only as far as it is read.

    span = RunSpan(ids, task, message_id, queue, retries, system, relay, scope)
    token = context.attach(trace.set_span_in_context(span))  # current while the task runs
    ...
    span.finish(outcome)                                     # one record or row to the export process

Its ids and sampling decision come with the delivery (``telemetry.tracing.run_ids``),
so starting it builds nothing: not a ``SpanContext`` until something asks for
one (a database or Redis client span, or task code calling
``get_current_span()``), no attribute dict, no event or link list until task
code adds one. A span that task code left alone ends as a fixed binary record
(``telemetry.tracing.export.run_records``) that the export process expands;
any other as a JSON row (``telemetry.tracing.export.rows``).

Why not the SDK's ``Span``: it is built for any use, so it validates every
attribute, takes a lock per call and copies itself into a ``ReadableSpan`` at
the end. For the one span every task has, that came to about 197k instructions
(callgrind), more than the rest of a no-op task in a pool process.

What is kept from the SDK: attributes, events and links added by task code go
through the SDK's ``BoundedAttributes`` validation and limits; status and
exception events follow the SDK's rules. Task code sees an ordinary span,
recording when the sampler records it.
"""

from __future__ import annotations

import struct
import time
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import AnyValue, Attributes

from telemetry.messages import RUN_FLAGS, RUN_PARENT_ID, RUN_RECORDING, RUN_SPAN_ID, RUN_TRACE_ID
from telemetry.tracing.attributes import (
    DESTINATION,
    MESSAGE_ID,
    OPERATION,
    PROCESS,
    SYSTEM,
    TASK_NAME,
    TASK_OUTCOME,
    TASK_RETRIES,
)
from telemetry.tracing.export.rows import dropped, row
from telemetry.tracing.export.run_records import pack_run

#: Limits for what task code adds: the SDK's defaults.
MAX_ADDED_ATTRIBUTES = 128
MAX_EVENTS = 128
MAX_LINKS = 128
UNSET = Status(StatusCode.UNSET)
SAMPLED = int(TraceFlags.SAMPLED)


class Relay(Protocol):
    """Where a finished span goes (``telemetry.tracing.export.relay.SpanRelay``)."""

    def send(self, rows: Any) -> None: ...

    def send_record(self, body: bytes) -> None: ...


class RunSpan(trace.Span):
    """A task's run span; see the module docstring. ``relay`` None: made, never sent."""

    def __init__(
        self,
        ids: tuple[Any, ...],
        task: str,
        message_id: str,
        queue: str,
        retries: int,
        system: str,
        relay: Relay | None,
        scope: InstrumentationScope,
    ) -> None:
        self._ids = ids
        self._task = task
        self._message_id = message_id
        self._queue = queue
        self._retries = retries
        self._system = system
        self._relay = relay
        self._scope = scope
        self._start = time.time_ns()
        self._end: int | None = None
        self._context: SpanContext | None = None
        #: The name, status, attributes, events and links task code gave it.
        self._name: str | None = None
        self._status = UNSET
        self._added: BoundedAttributes | None = None
        self._events: BoundedList[Event] | None = None
        self._links: BoundedList[Link] | None = None
        #: Set by a failure or a retry in the task; else the tracer's state decides.
        self.outcome: str | None = None

    @property
    def message_id(self) -> str:
        return self._message_id

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            ids = self._ids
            state = ids[5] if len(ids) > 5 and ids[5] else None
            context = self._context = SpanContext(
                ids[RUN_TRACE_ID],
                ids[RUN_SPAN_ID],
                is_remote=False,
                trace_flags=TraceFlags(ids[RUN_FLAGS]),
                trace_state=TraceState.from_header([state]) if state else None,
            )
        return context

    def is_recording(self) -> bool:
        return self._end is None and bool(self._ids[RUN_RECORDING])

    def set_attribute(self, key: str, value: AnyValue) -> None:
        if self.is_recording():
            if self._added is None:
                self._added = BoundedAttributes(MAX_ADDED_ATTRIBUTES, immutable=False)
            self._added[key] = value

    def set_attributes(self, attributes: Mapping[str, AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if self.is_recording():
            if self._events is None:
                # As the SDK's span: past the limit, the oldest is dropped and counted.
                self._events = BoundedList(MAX_EVENTS)
            self._events.append(
                Event(
                    name,
                    BoundedAttributes(MAX_ADDED_ATTRIBUTES, attributes, immutable=True),
                    timestamp or time.time_ns(),
                )
            )

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        if self.is_recording() and context.is_valid:
            if self._links is None:
                self._links = BoundedList(MAX_LINKS)
            self._links.append(
                Link(context, BoundedAttributes(MAX_ADDED_ATTRIBUTES, attributes, immutable=True))
            )

    def update_name(self, name: str) -> None:
        if self.is_recording():
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK: OK is final, UNSET is ignored, a description goes with a code."""
        if not self.is_recording() or self._status.status_code is StatusCode.OK:
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
        if not self.is_recording():
            return
        module, qualname = type(exception).__module__, type(exception).__qualname__
        event: dict[str, AnyValue] = {
            "exception.type": qualname if module in (None, "builtins") else f"{module}.{qualname}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        event.update(attributes or {})
        self.add_event("exception", event, timestamp)

    def finish(self, outcome: str) -> None:
        """The tracer's end of the span: its outcome (unless the task's failure or retry
        set one), then :meth:`end`."""
        if self._end is None:
            self.outcome = self.outcome or outcome
            self.end()

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time or time.time_ns()
        ids = self._ids
        if self._relay is None or not ids[RUN_FLAGS] & SAMPLED:
            return
        if self._plain():
            try:
                self._relay.send_record(
                    pack_run(
                        ids[RUN_TRACE_ID],
                        ids[RUN_SPAN_ID],
                        ids[RUN_FLAGS],
                        ids[RUN_PARENT_ID],
                        self.outcome,  # type: ignore[arg-type]  # _plain() checked it
                        self._start,
                        self._end,
                        self._retries,
                        self._system.encode(),
                        self._queue.encode(),
                        self._task.encode(),
                        self._message_id.encode(),
                    )
                )
                return
            except struct.error:
                pass  # a number too large for the record: the row carries any
        self._relay.send((self._row(),))

    def _plain(self) -> bool:
        """Left alone by task code and the sampler: a record says all of it."""
        return (
            self._name is None
            and self._added is None
            and self._events is None
            and self._links is None
            and self._status is UNSET
            and self.outcome is not None
            and len(self._ids) == 5
        )

    def _row(self) -> list[Any]:
        ids = self._ids
        if len(ids) > 6:
            attributes: dict[str, Any] = dict(ids[6])
        else:
            attributes = {
                SYSTEM: self._system,
                DESTINATION: self._queue,
                OPERATION: PROCESS,
                MESSAGE_ID: self._message_id,
                TASK_NAME: self._task,
                TASK_RETRIES: self._retries,
            }
        if self.outcome is not None:
            attributes[TASK_OUTCOME] = self.outcome
        if self._added:
            attributes.update(self._added)
        parent = None
        if ids[RUN_PARENT_ID]:
            parent = SpanContext(
                ids[RUN_TRACE_ID], ids[RUN_PARENT_ID], True, TraceFlags(ids[RUN_FLAGS])
            )
        events = self._events if self._events is not None else ()
        links = self._links if self._links is not None else ()
        return row(
            self._name or f"run/{self._task}",
            self.get_span_context(),
            parent,
            SpanKind.CONSUMER,
            self._start,
            self._end,
            self._status,
            attributes,
            events,
            links,
            self._scope,
            (dropped(self._added), dropped(self._events), dropped(self._links)),
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
