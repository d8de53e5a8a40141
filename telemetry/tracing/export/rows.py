"""Finished spans as compact JSON rows, for the hop from a worker process to its export process.

    line = resource_line(provider.resource)        # once per process
    datagram = encode(line, [row_of(span)])          # in the process that ended the span
    spans = SpanDecoder().decode(datagram)           # SDK ReadableSpans, in the export process

A datagram is the sending process's resource attributes as one JSON line, then
one JSON list of rows. (A plain span travels in a second form, already OTLP
protobuf: ``telemetry.tracing.export.encoded``.) A row is a list, in :data:`ROW` order; events are
``[name, timestamp, attributes]``, links ``[trace id, span id, flags, attributes]``,
ids are integers and times nanoseconds.

Why a codec of our own: OTLP protobuf encoding is the costly part of exporting
(about 90k instructions per span in Python), and the point of the hop is to do
it in the export process. ``json.dumps`` of a row is one C call. JSON, never
pickle: the export process builds nothing but spans from what it reads, and a
malformed datagram is a :class:`SpanDecodeError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from telemetry.bounded_cache import remember

#: The fields of a row, in order.
ROW = (
    "name", "trace_id", "span_id", "trace_flags", "trace_state", "parent_span_id",
    "parent_is_remote", "kind", "start_time", "end_time", "status_code", "status_description",
    "attributes", "events", "links", "scope_name", "scope_version",
)  # fmt: skip
_DUMPS = json.JSONEncoder(separators=(",", ":"), default=str).encode
#: Distinct resources (one per sending process) and scopes kept decoded; past it,
#: the cache starts over (pool processes recycled every task make a new resource each).
MAX_CACHED = 256


class DecodedResource(Resource):
    """A resource whose hash is computed once.

    The SDK's ``Resource`` hashes by serializing its attributes to JSON, and the
    OTLP encoder hashes the resource of every span it groups: about an eighth
    of the encoding. A resource is immutable, so its hash can be kept.
    """

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        super().__init__(attributes)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


class SpanDecodeError(ValueError):
    """A datagram that is not a resource line and a list of well-formed rows."""


def resource_line(resource: Resource) -> bytes:
    return _DUMPS(dict(resource.attributes)).encode()


def encode(line: bytes, rows: Sequence[Sequence[Any]]) -> bytes:
    return line + b"\n" + _DUMPS(rows).encode()


def row(
    name: str,
    context: SpanContext,
    parent: SpanContext | None,
    kind: SpanKind,
    start_time: int | None,
    end_time: int | None,
    status: Status,
    attributes: Mapping[str, Any] | None,
    events: Sequence[Event],
    links: Sequence[Link],
    scope: InstrumentationScope | None,
) -> list[Any]:
    return [
        name,
        context.trace_id,
        context.span_id,
        int(context.trace_flags),
        context.trace_state.to_header() if context.trace_state else "",
        parent.span_id if parent is not None else None,
        parent.is_remote if parent is not None else False,
        kind.value,
        start_time,
        end_time,
        status.status_code.value,
        status.description,
        dict(attributes) if attributes else {},
        [[e.name, e.timestamp, dict(e.attributes or {})] for e in events],
        [_link_row(link) for link in links],
        scope.name if scope is not None else "",
        scope.version if scope is not None else None,
    ]


def _link_row(link: Link) -> list[Any]:
    context = link.context
    return [
        context.trace_id,
        context.span_id,
        int(context.trace_flags),
        dict(link.attributes or {}),
    ]


def row_of(span: ReadableSpan) -> list[Any]:
    """The row of an SDK span (producer, client and main-process spans)."""
    context = span.context
    if context is None:
        raise SpanDecodeError("a span without a context cannot be exported")
    return row(
        span.name,
        context,
        span.parent,
        span.kind,
        span.start_time,
        span.end_time,
        span.status,
        span.attributes,
        span.events,
        span.links,
        span.instrumentation_scope,
    )


#: A row as :func:`checked_row` returns it.
Row = tuple[Any, ...]


@contextmanager
def refused_as_decode_errors() -> Iterator[None]:
    """Whatever a malformed datagram makes decoding raise, raised as a :class:`SpanDecodeError`."""
    try:
        yield
    except SpanDecodeError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        raise SpanDecodeError(f"{type(exc).__name__}: {exc}") from None


def split(datagram: bytes) -> tuple[bytes, list[Any]]:
    """A datagram's resource line and its rows, not yet checked."""
    line, newline, body = datagram.partition(b"\n")
    if not newline:
        raise SpanDecodeError("no resource line")
    rows = json.loads(body.decode())  # a str skips json's encoding detection
    if not isinstance(rows, list):
        raise SpanDecodeError("the rows are not a list")
    return line, rows


def checked_row(fields: Any) -> Row:
    """The row's fields, once their count and types are those of :data:`ROW`."""
    if not isinstance(fields, list) or len(fields) != len(ROW):
        raise SpanDecodeError(f"a row must have {len(ROW)} fields")
    (name, trace_id, span_id, flags, _, _, _, kind, start, end, status_code, description,
     attributes, events, links, _, _) = fields  # fmt: skip
    for number in (trace_id, span_id, flags, kind, start, end, status_code):
        if type(number) is not int:  # JSON makes no int subclass but bool
            raise SpanDecodeError("ids, flags, kind, times and status must be integers")
    if not isinstance(attributes, dict) or not isinstance(name, str):
        raise SpanDecodeError("a span needs a name and an attribute object")
    if description is not None and not isinstance(description, str):
        raise SpanDecodeError("a status description must be a string")
    if not isinstance(events, list) or not isinstance(links, list):
        raise SpanDecodeError("events and links must be lists")
    return tuple(fields)


class SpanDecoder:
    """Rebuilds SDK spans; keeps one Resource and scope object per distinct value."""

    def __init__(self) -> None:
        self._resources: dict[bytes, Resource] = {}
        self._scopes: dict[tuple[str, str | None], InstrumentationScope] = {}

    def decode(self, datagram: bytes) -> list[ReadableSpan]:
        with refused_as_decode_errors():
            line, rows = split(datagram)
            resource = self.resource(line)
            return [self.span(checked_row(fields), resource) for fields in rows]

    def resource(self, line: bytes) -> Resource:
        """The resource of a datagram's first line, decoded once per distinct line."""
        found = self._resources.get(line)
        if found is None:
            attributes = json.loads(line)
            if not isinstance(attributes, dict):
                raise SpanDecodeError("the resource line is not an object")
            found = remember(self._resources, line, DecodedResource(attributes), MAX_CACHED)
        return found

    def span(self, fields: Row, resource: Resource) -> ReadableSpan:
        """The SDK span of a row that :func:`checked_row` returned."""
        (name, trace_id, span_id, flags, trace_state, parent_id, parent_remote, kind, start,
         end, status_code, status_description, attributes, events, links, scope_name,
         scope_version) = fields  # fmt: skip
        state = TraceState.from_header([trace_state]) if trace_state else None
        context = SpanContext(trace_id, span_id, False, TraceFlags(flags), state)
        parent = (
            SpanContext(trace_id, parent_id, bool(parent_remote), TraceFlags(flags))
            if parent_id is not None
            else None
        )
        return ReadableSpan(
            name=name,
            context=context,
            parent=parent,
            resource=resource,
            attributes=attributes,
            events=[_event(fields) for fields in events],
            links=[_link(fields) for fields in links],
            kind=SpanKind(kind),
            status=Status(StatusCode(status_code), status_description),
            start_time=start,
            end_time=end,
            instrumentation_scope=self.scope(str(scope_name), scope_version),
        )

    def scope(self, name: str, version: str | None) -> InstrumentationScope:
        found = self._scopes.get((name, version))
        if found is None:
            found = remember(
                self._scopes, (name, version), InstrumentationScope(name, version), MAX_CACHED
            )
        return found


def _event(fields: Any) -> Event:
    name, timestamp, attributes = fields
    if (
        not isinstance(name, str)
        or not isinstance(timestamp, int)
        or not isinstance(attributes, dict)
    ):
        raise SpanDecodeError("an event is [name, timestamp, attributes]")
    return Event(name, attributes, timestamp)


def _link(fields: Any) -> Link:
    trace_id, span_id, flags, attributes = fields
    if not all(isinstance(n, int) for n in (trace_id, span_id, flags)) or not isinstance(
        attributes, dict
    ):
        raise SpanDecodeError("a link is [trace id, span id, flags, attributes]")
    return Link(SpanContext(trace_id, span_id, True, TraceFlags(flags)), attributes)
