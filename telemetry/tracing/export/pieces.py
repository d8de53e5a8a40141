"""OTLP protobuf for plain spans, joined from pieces that are encoded once and reused.

    pieces = SpanPieces()
    span = pieces.plain(fields)                   # a row's Span message, or None: not plain
    parts = envelope_parts(resource, scope)       # the resource and scope around spans
    body = request_body({parts: [framed(SPAN, span)]})

A plain span has no events, no links and no trace state, attributes that are
strings, integers or booleans, and a status description only with an error:
the run span of every task that succeeds or fails. Protobuf defines the
concatenation of two encodings of a message as their merge, repeated fields
appended, so a span is the join of one piece for its name and kind, one per
(key, value) attribute (kept in a bounded cache) and its ids, times, flags and
status packed by one ``struct`` call. That costs about a microsecond where
building and serializing the message costs six, and a pool process can afford
it on a task's path: it replaces the JSON row it would otherwise send.

Envelopes are framed the same way: an ``ExportTraceServiceRequest`` is one
length-delimited ``ResourceSpans`` per (resource, scope), each holding its
resource's fields, then one ``ScopeSpans`` of the scope's fields and the spans.
The tests hold every piece to the SDK's ``encode_spans`` of the same span.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from telemetry.bounded_cache import remember

#: Encoded pieces kept; past it the cache starts over (a message id is a new piece per span).
MAX_CACHED_PIECES = 4096
INT64 = range(-(1 << 63), 1 << 63)
UINT64 = range(1 << 64)
UINT64_MASK = (1 << 64) - 1
#: The OTLP span flags the SDK sets: whether the parent was remote is known, and if it was.
HAS_IS_REMOTE = trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
IS_REMOTE = trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
STATUS_CODES = frozenset(code.value for code in StatusCode)
ERROR = StatusCode.ERROR.value
KIND = {kind.value: getattr(trace_pb2.Span, f"SPAN_KIND_{kind.name}") for kind in SpanKind}
#: Field tags of the length-delimited fields the envelopes are framed with:
#: ExportTraceServiceRequest.resource_spans (1), ResourceSpans.scope_spans (2),
#: ScopeSpans.spans (2).
RESOURCE_SPANS = b"\x0a"
SCOPE_SPANS = b"\x12"
SPAN = b"\x12"
#: A span's ids, times and flags, each after its tag: trace_id (1), span_id (2),
#: start (7) and end (8) times, flags (16) and, under a parent, parent_span_id (4).
_ROOT = struct.Struct("<2s16s2s8s1sQ1sQ2sI")
_CHILD = struct.Struct("<2s16s2s8s1sQ1sQ2sI2s8s")
ID, SPAN_ID, START, END, FLAGS, PARENT_ID = (
    b"\x0a\x10",
    b"\x12\x08",
    b"\x39",
    b"\x41",
    b"\x85\x01",
    b"\x22\x08",
)
#: (resource fields, scope fields): what :func:`request_body` frames spans in.
Envelope = tuple[bytes, bytes]


def varint(value: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:  # a span's length is most often here
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def framed(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return tag + varint(len(payload)) + payload


def request_body(spans_by_envelope: Mapping[Envelope, Iterable[bytes]]) -> bytes:
    """An ExportTraceServiceRequest of spans already framed as ``ScopeSpans.spans``."""
    return b"".join(
        framed(RESOURCE_SPANS, resource + framed(SCOPE_SPANS, scope + b"".join(spans)))
        for (resource, scope), spans in spans_by_envelope.items()
    )


def envelope_parts(resource: Resource, scope: InstrumentationScope) -> Envelope:
    """The fields of ``resource`` and ``scope`` as the SDK's encoder writes them around spans."""
    probe = ReadableSpan(
        name="",
        context=SpanContext(1, 1, is_remote=False),
        resource=resource,
        instrumentation_scope=scope,
    )
    resource_spans = encode_spans([probe]).resource_spans[0]
    scope_spans = resource_spans.scope_spans[0]
    del scope_spans.spans[:]
    return (
        trace_pb2.ResourceSpans(
            resource=resource_spans.resource, schema_url=resource_spans.schema_url
        ).SerializeToString(),
        trace_pb2.ScopeSpans(
            scope=scope_spans.scope, schema_url=scope_spans.schema_url
        ).SerializeToString(),
    )


class SpanPieces:
    """The encoding of plain spans from span rows (``telemetry.tracing.export.rows``); see the module docstring."""

    def __init__(self) -> None:
        self._pieces: dict[tuple[Any, ...], bytes] = {}

    def plain(self, fields: Sequence[Any]) -> bytes | None:
        """The Span message of a well-typed row (``span_codec.checked_row``); None when it is
        not plain. ``ValueError`` or ``OverflowError`` for a value OTLP cannot hold."""
        (name, trace_id, span_id, _, trace_state, parent_id, parent_remote, kind, start, end,
         status_code, status_description, attributes, events, links, _, _) = fields  # fmt: skip
        if status_code not in STATUS_CODES:
            raise ValueError(f"no status code {status_code}")
        if events or links or trace_state or (status_description and status_code != ERROR):
            return None
        if start not in UINT64 or end not in UINT64:
            raise ValueError("span times must be unsigned 64-bit nanoseconds")
        pieces = [self._head(name, kind), self._status(status_code, status_description)]
        cached = self._pieces.get
        for key, value in attributes.items():
            # a string attribute is keyed (key, value); any other (key, type, value)
            piece = cached((key, value)) if type(value) is str else None
            if piece is None:
                piece = self._attribute(key, value)
                if piece is None:
                    return None
            pieces.append(piece)
        trace_bytes, span_bytes = trace_id.to_bytes(16, "big"), span_id.to_bytes(8, "big")
        if parent_id is None:
            ids = _ROOT.pack(
                ID, trace_bytes, SPAN_ID, span_bytes, START, start, END, end, FLAGS, HAS_IS_REMOTE
            )
        else:
            flags = HAS_IS_REMOTE | (IS_REMOTE if parent_remote else 0)
            parent = parent_id.to_bytes(8, "big")
            ids = _CHILD.pack(
                ID,
                trace_bytes,
                SPAN_ID,
                span_bytes,
                START,
                start,
                END,
                end,
                FLAGS,
                flags,
                PARENT_ID,
                parent,
            )
        pieces.append(ids)
        return b"".join(pieces)

    def _attribute(self, key: str, value: Any) -> bytes | None:
        """The piece of one attribute; None for a value the SDK's encoder must handle."""
        kind = type(value)
        if kind is not str and kind is not bool and kind is not int:
            return None
        cache_key = (key, value) if kind is str else (key, kind, value)
        found = self._pieces.get(cache_key)
        if found is not None:
            return found
        if kind is str:
            any_value = framed(b"\x0a", value.encode())  # AnyValue.string_value (1)
        elif kind is bool:
            any_value = b"\x10\x01" if value else b"\x10\x00"  # AnyValue.bool_value (2)
        elif kind is int and value in INT64:
            any_value = b"\x18" + varint(value & UINT64_MASK)  # AnyValue.int_value (3)
        else:
            return None
        # Span.attributes (9) of KeyValue: key (1), value (2)
        piece = framed(b"\x4a", framed(b"\x0a", key.encode()) + framed(b"\x12", any_value))
        return self._keep(cache_key, piece)

    def _head(self, name: str, kind: int) -> bytes:
        """The piece of a span's name and kind."""
        found = self._pieces.get((name, kind))
        if found is None:
            piece = trace_pb2.Span(name=name, kind=KIND[kind]).SerializePartialToString()
            found = self._keep((name, kind), piece)
        return found

    def _status(self, code: int, description: str | None) -> bytes:
        """The piece of a span's status; the SDK always writes one, empty or not."""
        found = self._pieces.get((code, description))
        if found is None:
            status = trace_pb2.Status(code=code, message=description)  # type: ignore[arg-type]
            found = self._keep(
                (code, description), trace_pb2.Span(status=status).SerializePartialToString()
            )
        return found

    def _keep(self, key: tuple[Any, ...], piece: bytes) -> bytes:
        return remember(self._pieces, key, piece, MAX_CACHED_PIECES)
