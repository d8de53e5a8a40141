"""Rows back into SDK spans, in the export process: the other end of ``telemetry.tracing.export.rows``.

    spans = SpanDecoder().decode(datagram)    # SDK ReadableSpans, or a SpanDecodeError

A datagram's body is a JSON list of rows or one run record
(``telemetry.tracing.export.run_records``), expanded here into its row.

Every field of a row is checked for its type before a span is built from it,
so a malformed datagram is one :class:`SpanDecodeError`, whatever it holds.
Resources and scopes are decoded once per distinct value and kept.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from telemetry.bounded_cache import remember
from telemetry.tracing.export.rows import BYTES, ROW, SpanDecodeError, dumps
from telemetry.tracing.export.run_records import RUN_RECORD, SCOPE_ROW, RecordSpan, unpack_run

#: Distinct resources (one per sending process) and scopes kept decoded; past it,
#: the cache starts over (pool processes recycled every task make a new resource each).
MAX_CACHED = 256


def _untagged(mapping: dict[str, Any]) -> Any:
    if len(mapping) == 1 and BYTES in mapping:
        return base64.b64decode(mapping[BYTES])
    return mapping


_LOADS_TAGGED = json.JSONDecoder(object_hook=_untagged).decode
_LOADS_PLAIN = json.JSONDecoder().decode
#: How a tag looks in JSON text; text without it is decoded with no hook (a Python
#: call per decoded object would double the cost of decoding a row).
_TAG_TEXT = json.dumps(BYTES)[1:-1]


def _loads(text: str) -> Any:
    return (_LOADS_TAGGED if _TAG_TEXT in text else _LOADS_PLAIN)(text)


class DecodedResource(Resource):
    """A resource whose hash is computed once.

    The SDK's ``Resource`` hashes by serializing its attributes to JSON, and the
    OTLP encoder hashes the resource of every span it groups: about an eighth
    of the encoding. A resource is immutable, so its hash can be kept.
    """

    def __init__(self, attributes: Mapping[str, Any], schema_url: str | None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


#: A row as :func:`checked_row` returns it.
Row = tuple[Any, ...]


@contextmanager
def refused_as_decode_errors() -> Iterator[None]:
    """Whatever a malformed datagram makes decoding raise, raised as a :class:`SpanDecodeError`."""
    try:
        yield
    except SpanDecodeError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        RecursionError,
        struct.error,
    ) as exc:
        raise SpanDecodeError(f"{type(exc).__name__}: {exc}") from None


def checked_row(fields: Any) -> Row:
    """The row's fields, once their count and types are those of :data:`ROW`."""
    if not isinstance(fields, list) or len(fields) != len(ROW):
        raise SpanDecodeError(f"a row must have {len(ROW)} fields")
    (name, trace_id, span_id, flags, _, _, _, kind, start, end, status_code, description,
     attributes, dropped_attributes, events, dropped_events, links, dropped_links,
     _) = fields  # fmt: skip
    for number in (trace_id, span_id, flags, kind, start, end, status_code, dropped_attributes,
                   dropped_events, dropped_links):  # fmt: skip
        if type(number) is not int:  # JSON makes no int subclass but bool
            raise SpanDecodeError("ids, flags, kind, times, status and counts must be integers")
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
        self._scopes: dict[tuple[Any, ...], InstrumentationScope] = {}
        #: The run spans' scope, decoded once.
        self._run_scope: InstrumentationScope | None = None

    def decode_keeping_records(self, datagram: bytes) -> list[ReadableSpan | RecordSpan]:
        """As :meth:`decode`, but a run record stays a checked :class:`RecordSpan`, for
        the contained encoder (``telemetry.tracing.export.encoder``)."""
        line, _, body = datagram.partition(b"\n")
        if body[:1] != RUN_RECORD:
            return list(self.decode(datagram))
        scope = self._run_scope
        if scope is None:
            scope = self._run_scope = self.scope(SCOPE_ROW)
        try:
            return [RecordSpan(body, self.resource(line), scope)]  # type: ignore[arg-type]
        except SpanDecodeError:
            raise
        except (ValueError, TypeError, struct.error) as exc:
            raise SpanDecodeError(f"{type(exc).__name__}: {exc}") from None

    def decode(self, datagram: bytes) -> list[ReadableSpan]:
        with refused_as_decode_errors():
            line, newline, body = datagram.partition(b"\n")
            if not newline:
                raise SpanDecodeError("no resource line")
            rows = [unpack_run(body)] if body[:1] == RUN_RECORD else _loads(body.decode())
            if not isinstance(rows, list):
                raise SpanDecodeError("the rows are not a list")
            resource = self.resource(line)
            return [self.span(checked_row(fields), resource) for fields in rows]

    def resource(self, line: bytes) -> Resource:
        """The resource of a datagram's first line, decoded once per distinct line."""
        found = self._resources.get(line)
        if found is None:
            attributes, schema_url = _loads(line.decode())
            if not isinstance(attributes, dict) or not isinstance(schema_url, str):
                raise SpanDecodeError("the resource line is not [attributes, schema URL]")
            decoded = DecodedResource(attributes, schema_url or None)
            found = remember(self._resources, line, decoded, MAX_CACHED)
        return found

    def span(self, fields: Row, resource: Resource) -> ReadableSpan:
        """The SDK span of a row that :func:`checked_row` returned."""
        (name, trace_id, span_id, flags, trace_state, parent_id, parent_remote, kind, start,
         end, status_code, status_description, attributes, dropped_attributes, events,
         dropped_events, links, dropped_links, scope) = fields  # fmt: skip
        context = SpanContext(trace_id, span_id, False, TraceFlags(flags), _state(trace_state))
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
            attributes=_bounded(attributes, dropped_attributes),
            events=_bounded_list([_event(fields) for fields in events], dropped_events),
            links=_bounded_list([_link(fields) for fields in links], dropped_links),
            kind=SpanKind(kind),
            status=Status(StatusCode(status_code), status_description),
            start_time=start,
            end_time=end,
            instrumentation_scope=self.scope(scope),
        )

    def scope(self, fields: Any) -> InstrumentationScope | None:
        if fields is None:
            return None
        if not isinstance(fields, list) or len(fields) != 4:
            raise SpanDecodeError("a scope is [name, version, schema URL, attributes]")
        name, version, schema_url, attributes = fields
        if not isinstance(name, str) or not isinstance(attributes, dict):
            raise SpanDecodeError("a scope is [name, version, schema URL, attributes]")
        # Scopes rarely carry attributes; only those that do pay for a serialized key.
        key = (name, version, schema_url, dumps(attributes) if attributes else "")
        found = self._scopes.get(key)
        if found is None:
            scope = InstrumentationScope(name, version, schema_url, attributes or None)
            found = remember(self._scopes, key, scope, MAX_CACHED)
        return found


def _state(header: Any) -> TraceState | None:
    return TraceState.from_header([header]) if header else None


def _bounded(attributes: Any, dropped: Any) -> Mapping[str, Any]:
    """Attributes as the SDK's encoder reads them, with the count their limits dropped.

    The SDK reports a dropped count only from a ``BoundedAttributes``, so one is
    built (validating again what the sender validated) only when something was
    dropped; otherwise the decoded dict is what the encoder reads.
    """
    if not isinstance(attributes, dict) or type(dropped) is not int:
        raise SpanDecodeError("attributes are an object and a dropped count")
    if not dropped:
        return attributes
    bounded = BoundedAttributes(None, attributes, immutable=True)
    bounded.dropped = dropped
    return bounded


def _bounded_list(items: list[Any], dropped: int) -> Sequence[Any]:
    """Events or links, as a ``BoundedList`` only when some were dropped (see :func:`_bounded`)."""
    if not dropped:
        return items
    bounded = BoundedList.from_seq(None, items)
    bounded.dropped = dropped
    return bounded


def _event(fields: Any) -> Event:
    name, timestamp, attributes, dropped = fields
    if not isinstance(name, str) or type(timestamp) is not int:
        raise SpanDecodeError("an event is [name, timestamp, attributes, dropped]")
    return Event(name, _bounded(attributes, dropped), timestamp)


def _link(fields: Any) -> Link:
    trace_id, span_id, flags, trace_state, is_remote, attributes, dropped = fields
    if not all(type(n) is int for n in (trace_id, span_id, flags)):
        raise SpanDecodeError(
            "a link is [trace id, span id, flags, state, remote, attributes, dropped]"
        )
    context = SpanContext(
        trace_id, span_id, bool(is_remote), TraceFlags(flags), _state(trace_state)
    )
    return Link(context, _bounded(attributes, dropped))
