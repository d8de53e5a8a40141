"""Pieces join into the protobuf the SDK would write (the span itself: test_otlp_request.py)."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from telemetry.tracing.export.pieces import (
    SPAN,
    SpanPieces,
    envelope_parts,
    framed,
    request_body,
    varint,
)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 1 << 35, (1 << 64) - 1])
def test_a_varint_is_written_as_protobuf_writes_it(value: int) -> None:
    signed = value - (1 << 64) if value >= 1 << 63 else value  # AnyValue.int_value is an int64
    assert AnyValue(int_value=signed).SerializeToString() == b"\x18" + varint(value)


def test_framed_spans_under_their_envelopes_make_a_request() -> None:
    """Given two envelopes and spans framed for them, the body parses as the request the
    protobuf library would build, each span under its own resource and scope."""
    first = envelope_parts(Resource.create({"service.name": "a"}), InstrumentationScope("s", "1"))
    second = envelope_parts(Resource.create({"service.name": "b"}), InstrumentationScope("t"))
    spans = [
        trace_pb2.Span(name=f"span-{n}", span_id=bytes(8), trace_id=bytes(16)) for n in range(3)
    ]
    body = request_body(
        {
            first: [
                framed(SPAN, spans[0].SerializeToString()),
                framed(SPAN, spans[1].SerializeToString()),
            ],
            second: [framed(SPAN, spans[2].SerializeToString())],
        }
    )
    request = ExportTraceServiceRequest.FromString(body)
    assert [
        (
            {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}[
                "service.name"
            ],
            scope_spans.scope.name,
            scope_spans.scope.version,
            [span.name for span in scope_spans.spans],
        )
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
    ] == [("a", "s", "1", ["span-0", "span-1"]), ("b", "t", "", ["span-2"])]
    assert request_body({}) == b""


def test_a_row_that_is_not_plain_gets_no_pieces() -> None:
    row = ["n", 1, 2, 1, "", None, False, 0, 5, 6, 0, None, {"list": ["a"]}, [], [], "s", None]
    assert SpanPieces().plain(row) is None
    row[12] = {"ok": "yes"}
    assert SpanPieces().plain(row) is not None
    row[13] = [["event", 5, {}]]
    assert SpanPieces().plain(row) is None
