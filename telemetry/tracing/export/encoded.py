"""The second form of a span datagram: one plain span, already OTLP protobuf.

    head = encoded_head(envelope_parts(resource, scope))   # once per process and scope
    datagram = head + SpanPieces().plain(row)              # where the span ended
    envelope, span = EncodedSpans().checked(datagram)      # export process, OTLP/HTTP
    spans = DatagramDecoder().decode(datagram)             # SDK spans from either form

A datagram of this form is the :data:`ENCODED` byte, the sizes of the resource's
and the scope's fields, those fields (``telemetry.tracing.export.pieces.envelope_parts``)
and the span's ``Span`` message. The JSON form (``telemetry.tracing.export.rows``) starts
with its resource line's ``{`` instead.

A pool process encodes its plain spans from pieces for about what ``json.dumps``
of their rows cost, and the export process then only parses each span to check
it before framing it into a request unchanged. What it accepts is what the
collector would: well-formed protobuf, ids of 16 and 8 bytes, a resource and a
scope that hold no spans. Anything else is a :class:`SpanDecodeError`.
"""

from __future__ import annotations

import struct
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from telemetry.bounded_cache import remember
from telemetry.tracing.export.pieces import IS_REMOTE, KIND, STATUS_CODES, Envelope
from telemetry.tracing.export.rows import MAX_CACHED, DecodedResource, SpanDecodeError, SpanDecoder

#: The first byte of an encoded datagram.
ENCODED = b"\x00"
#: ENCODED, then the sizes of the resource's and the scope's fields.
_HEAD = struct.Struct("<cII")
_KIND = {otlp: SpanKind(value) for value, otlp in KIND.items()}


def encoded_head(envelope: Envelope) -> bytes:
    """What precedes every span of one resource and scope in an encoded datagram."""
    resource_fields, scope_fields = envelope
    return _HEAD.pack(ENCODED, len(resource_fields), len(scope_fields)) + (
        resource_fields + scope_fields
    )


class _Origin:
    """A checked head: its envelope, and the SDK's resource and scope for it."""

    def __init__(self, resource_fields: bytes, scope_fields: bytes) -> None:
        resource_spans = trace_pb2.ResourceSpans.FromString(resource_fields)
        scope_spans = trace_pb2.ScopeSpans.FromString(scope_fields)
        if resource_spans.scope_spans or scope_spans.spans:
            raise SpanDecodeError("an encoded datagram's resource or scope holds spans")
        self.envelope = (resource_fields, scope_fields)
        self.resource = DecodedResource(
            {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        )
        scope = scope_spans.scope
        self.scope = InstrumentationScope(scope.name, scope.version or None)


class EncodedSpans:
    """Checks encoded datagrams; keeps one checked head per distinct resource and scope."""

    def __init__(self) -> None:
        self._origins: dict[bytes, _Origin] = {}

    def checked(self, datagram: bytes) -> tuple[Envelope, bytes]:
        """The datagram's envelope and span, once both are what a collector accepts."""
        origin, span, _ = self._parsed(datagram)
        return origin.envelope, span

    def sdk_span(self, datagram: bytes) -> ReadableSpan:
        """The SDK span a datagram holds, for exporters that take SDK spans."""
        origin, _, message = self._parsed(datagram)
        trace_id = int.from_bytes(message.trace_id, "big")
        flags = TraceFlags(TraceFlags.SAMPLED)  # only sampled spans are sent; OTLP omits flags
        parent = None
        if message.parent_span_id:
            parent = SpanContext(
                trace_id,
                int.from_bytes(message.parent_span_id, "big"),
                bool(message.flags & IS_REMOTE),
                flags,
            )
        status = message.status
        return ReadableSpan(
            name=message.name,
            context=SpanContext(trace_id, int.from_bytes(message.span_id, "big"), False, flags),
            parent=parent,
            resource=origin.resource,
            attributes={kv.key: _value(kv.value) for kv in message.attributes},
            kind=_KIND[message.kind],
            status=Status(StatusCode(status.code), status.message or None),
            start_time=message.start_time_unix_nano,
            end_time=message.end_time_unix_nano,
            instrumentation_scope=origin.scope,
        )

    def _parsed(self, datagram: bytes) -> tuple[_Origin, bytes, trace_pb2.Span]:
        if len(datagram) < _HEAD.size or datagram[:1] != ENCODED:
            raise SpanDecodeError("not an encoded datagram")
        _, resource_size, scope_size = _HEAD.unpack_from(datagram)
        scope_at = _HEAD.size + resource_size
        span_at = scope_at + scope_size
        if span_at >= len(datagram):
            raise SpanDecodeError("an encoded datagram shorter than its head says")
        head, span = datagram[:span_at], datagram[span_at:]
        try:
            origin = self._origins.get(head)
            if origin is None:
                fields = datagram[_HEAD.size : scope_at], datagram[scope_at:span_at]
                origin = remember(self._origins, head, _Origin(*fields), MAX_CACHED)
            message = trace_pb2.Span.FromString(span)
        except DecodeError as exc:
            raise SpanDecodeError(f"not OTLP protobuf: {exc}") from None
        if len(message.trace_id) != 16 or len(message.span_id) != 8:
            raise SpanDecodeError("an encoded span needs a 16-byte trace id and an 8-byte span id")
        if len(message.parent_span_id) not in (0, 8):
            raise SpanDecodeError("an encoded span's parent id must have 8 bytes")
        if message.kind not in _KIND or message.status.code not in STATUS_CODES:
            raise SpanDecodeError("an encoded span's kind or status code is unknown")
        return origin, span, message


class DatagramDecoder:
    """SDK spans from a datagram of either form, for exporters that take SDK spans."""

    def __init__(self) -> None:
        self.rows = SpanDecoder()
        self.encoded = EncodedSpans()

    def decode(self, datagram: bytes) -> list[ReadableSpan]:
        if datagram[:1] == ENCODED:
            return [self.encoded.sdk_span(datagram)]
        return self.rows.decode(datagram)


def _value(value: AnyValue) -> Any:
    """An attribute value as the SDK holds it: a scalar or a tuple of scalars."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(each) for each in value.array_value.values)
    if which in ("string_value", "bool_value", "int_value", "double_value", "bytes_value"):
        return getattr(value, which)
    raise SpanDecodeError(f"an attribute value of kind {which} cannot be decoded")
