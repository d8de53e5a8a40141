"""Span rows (``telemetry.span_codec``) gathered into one OTLP/HTTP request body.

    request = OtlpRequest()
    request.add(datagram)     # SpanDecodeError when malformed, and then nothing of it is kept
    body = request.take()     # a serialized ExportTraceServiceRequest; the request starts over

Why not only the SDK's encoder: rebuilding SDK spans from rows and encoding them
with ``encode_spans`` cost the export process about 90 us per span, and on a
host whose cores the tasks keep busy that time comes out of the tasks. A plain
span here (no events, no links, no trace state, attributes that are strings,
integers or booleans: the run span of every task that succeeds) is joined from
protobuf pieces encoded once and then reused, one for its name and kind and one
per (key, value) attribute, with a per-span piece for its ids, times, status
and flags. Protobuf defines the concatenation of two encodings of a message as
their merge, repeated fields appended, so the joined pieces are the encoding of
the whole span. Any other span is rebuilt and encoded by the SDK's own
``encode_spans``, one span at a time so that a span the SDK cannot encode is
refused on arrival instead of failing a whole batch. The tests hold both paths
to the SDK's encoding of the same span.
"""

from __future__ import annotations

from typing import Any, cast

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

from telemetry.span_codec import (
    MAX_CACHED,
    Row,
    SpanDecodeError,
    SpanDecoder,
    checked_row,
    refused_as_decode_errors,
    split,
)

#: Encoded pieces kept; past it the cache starts over (a message id is a new piece per span).
MAX_CACHED_PIECES = 4096
INT64 = range(-(1 << 63), 1 << 63)
#: The OTLP span flags the SDK sets: whether the parent was remote is known, and if it was.
HAS_IS_REMOTE = trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
IS_REMOTE = trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
STATUS_CODES = frozenset(code.value for code in StatusCode)
ERROR = StatusCode.ERROR.value
KIND = {kind.value: getattr(trace_pb2.Span, f"SPAN_KIND_{kind.name}") for kind in SpanKind}
#: A row's resource line, scope name and scope version.
Origin = tuple[bytes, str, str | None]


class OtlpRequest:
    """Spans on their way to one ExportTraceServiceRequest; see the module docstring."""

    def __init__(self) -> None:
        self._decoder = SpanDecoder()
        self._pieces: dict[tuple[Any, ...], bytes] = {}
        self._envelopes: dict[Origin, trace_pb2.ResourceSpans] = {}
        self._plain: dict[Origin, list[bytes]] = {}
        self._encoded: list[bytes] = []
        #: Spans and datagram bytes added since the last take.
        self.spans = 0
        self.size = 0

    def add(self, datagram: bytes) -> None:
        plain: list[tuple[Origin, bytes]] = []
        encoded: list[bytes] = []
        with refused_as_decode_errors():
            line, rows = split(datagram)
            resource = self._decoder.resource(line)
            for fields in map(checked_row, rows):
                span = self._plain_span(fields)
                if span is None:
                    encoded.append(self._sdk_span(fields, resource))
                else:
                    origin = (line, str(fields[-2]), fields[-1])
                    self._envelope(origin)  # a scope the SDK cannot encode is refused here
                    plain.append((origin, span))
        for origin, span in plain:
            self._plain.setdefault(origin, []).append(span)
        self._encoded.extend(encoded)
        self.spans += len(rows)
        self.size += len(datagram)

    def take(self) -> bytes:
        """The body for everything added since the last take."""
        request = ExportTraceServiceRequest()
        for origin, spans in self._plain.items():
            envelope = request.resource_spans.add()
            envelope.CopyFrom(self._envelope(origin))
            scope_spans = envelope.scope_spans[0].spans
            for span in spans:
                scope_spans.add().MergeFromString(span)
        body: bytes = request.SerializePartialToString() + b"".join(self._encoded)
        self._plain, self._encoded, self.spans, self.size = {}, [], 0, 0
        return body

    def _plain_span(self, fields: Row) -> bytes | None:
        (name, trace_id, span_id, _, trace_state, parent_id, parent_remote, kind, start, end,
         status_code, status_description, attributes, events, links, _, _) = fields  # fmt: skip
        if status_code not in STATUS_CODES:
            raise SpanDecodeError(f"no status code {status_code}")
        if events or links or trace_state or (status_description and status_code != ERROR):
            return None
        pieces = [self._head(name, kind)]
        for key, value in attributes.items():
            piece = self._attribute(key, value)
            if piece is None:
                return None
            pieces.append(piece)
        has_parent = parent_id is not None
        pieces.append(
            trace_pb2.Span(
                trace_id=trace_id.to_bytes(16, "big"),
                span_id=span_id.to_bytes(8, "big"),
                parent_span_id=parent_id.to_bytes(8, "big") if has_parent else b"",
                start_time_unix_nano=start,
                end_time_unix_nano=end,
                status=trace_pb2.Status(
                    code=cast("trace_pb2.Status.StatusCode.ValueType", status_code),
                    message=status_description,
                ),
                flags=HAS_IS_REMOTE | (IS_REMOTE if has_parent and parent_remote else 0),
            ).SerializePartialToString()
        )
        return b"".join(pieces)

    def _attribute(self, key: str, value: Any) -> bytes | None:
        """The piece of one attribute; None for a value the SDK's encoder must handle."""
        kind = type(value)
        if kind is not str and kind is not bool and (kind is not int or value not in INT64):
            return None
        found: bytes | None = self._pieces.get((key, kind, value))
        if found is not None:
            return found
        if kind is str:
            any_value = AnyValue(string_value=value)
        elif kind is bool:
            any_value = AnyValue(bool_value=value)
        else:
            any_value = AnyValue(int_value=value)
        span = trace_pb2.Span(attributes=[KeyValue(key=key, value=any_value)])
        return self._keep((key, kind, value), span)

    def _head(self, name: str, kind: int) -> bytes:
        """The piece of a span's name and kind."""
        found: bytes | None = self._pieces.get((name, kind))
        if found is None:
            found = self._keep((name, kind), trace_pb2.Span(name=name, kind=KIND[kind]))
        return found

    def _keep(self, key: tuple[Any, ...], piece: trace_pb2.Span) -> bytes:
        if len(self._pieces) >= MAX_CACHED_PIECES:
            self._pieces.clear()
        encoded: bytes = piece.SerializePartialToString()
        self._pieces[key] = encoded
        return encoded

    def _sdk_span(self, fields: Row, resource: Resource) -> bytes:
        request = encode_spans([self._decoder.span(fields, resource)])
        encoded: bytes = request.SerializePartialToString()
        return encoded

    def _envelope(self, origin: Origin) -> trace_pb2.ResourceSpans:
        """The resource and scope of ``origin``, as the SDK's encoder writes them, with no spans."""
        found = self._envelopes.get(origin)
        if found is None:
            if len(self._envelopes) >= MAX_CACHED:
                self._envelopes.clear()
            line, scope_name, scope_version = origin
            probe = ReadableSpan(
                name="",
                context=SpanContext(1, 1, is_remote=False),
                resource=self._decoder.resource(line),
                instrumentation_scope=self._decoder.scope(scope_name, scope_version),
            )
            found = encode_spans([probe]).resource_spans[0]
            del found.scope_spans[0].spans[:]
            self._envelopes[origin] = found
        return found
