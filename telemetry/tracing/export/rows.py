"""Finished spans as compact JSON rows: the format that crosses the hop to the export process.

    line = resource_line(provider.resource)          # once per process
    datagram = encode(line, [row_of(span)])           # in the process that ended the span

A datagram is the sending process's resource (attributes and schema URL) as one
JSON line, then one JSON list of rows. A row is a list, in :data:`ROW` order;
ids are integers and times nanoseconds. It carries every field the SDK's OTLP
encoder reads, so the export process's exporter encodes the decoded span
(``telemetry.tracing.export.decoder``) exactly as it would have encoded the
original: attributes (``bytes`` values tagged), dropped counts, events, links
with their remote flag, status, trace state, and the instrumentation scope with
its version, schema URL and attributes.

Why JSON rows: ``json.dumps`` of a row is one C call, so the process that ran
the task pays little, and the costly OTLP encoding happens in the export
process. JSON, never pickle: the export process builds nothing but spans from
what it reads, and a malformed datagram is a :class:`SpanDecodeError`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status

#: The fields of a row, in order.
ROW = (
    "name", "trace_id", "span_id", "trace_flags", "trace_state", "parent_span_id",
    "parent_is_remote", "kind", "start_time", "end_time", "status_code", "status_description",
    "attributes", "dropped_attributes", "events", "dropped_events", "links", "dropped_links",
    "scope",
)  # fmt: skip
#: An attribute value of type ``bytes`` travels as ``{BYTES: "<base64>"}``.
BYTES = "\x00bytes"


def _tagged(value: object) -> object:
    if isinstance(value, bytes):
        return {BYTES: base64.b64encode(value).decode()}
    return str(value)


#: Compact JSON, with ``bytes`` tagged: the one encoder of rows.
dumps = json.JSONEncoder(separators=(",", ":"), default=_tagged).encode


class SpanDecodeError(ValueError):
    """A datagram that is not a resource line and a list of well-formed rows."""


def resource_line(resource: Resource) -> bytes:
    return dumps([dict(resource.attributes), resource.schema_url or ""]).encode()


def encode(line: bytes, rows: Sequence[Sequence[Any]]) -> bytes:
    return line + b"\n" + dumps(rows).encode()


def dropped(collection: object) -> int:
    """What a bounded SDK collection dropped; 0 for any other."""
    return int(getattr(collection, "dropped", 0) or 0)


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
    dropped_counts: tuple[int, int, int] = (0, 0, 0),
) -> list[Any]:
    """A span's row; ``dropped_counts``: attributes, events and links past their limits."""
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
        dropped_counts[0],
        [[e.name, e.timestamp, dict(e.attributes or {}), e.dropped_attributes] for e in events],
        dropped_counts[1],
        [_link_row(link) for link in links],
        dropped_counts[2],
        _scope_row(scope),
    ]


def _link_row(link: Link) -> list[Any]:
    context = link.context
    return [
        context.trace_id,
        context.span_id,
        int(context.trace_flags),
        context.trace_state.to_header() if context.trace_state else "",
        context.is_remote,
        dict(link.attributes or {}),
        link.dropped_attributes,
    ]


def _scope_row(scope: InstrumentationScope | None) -> list[Any] | None:
    if scope is None:
        return None
    return [scope.name, scope.version, scope.schema_url, dict(scope.attributes or {})]


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
        (span.dropped_attributes, span.dropped_events, span.dropped_links),
    )
