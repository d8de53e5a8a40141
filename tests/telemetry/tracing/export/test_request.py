"""The request body built from rows is the SDK's OTLP encoding of the same spans."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from telemetry.tracing.export import pieces as span_pieces
from telemetry.tracing.export import request as otlp_request
from telemetry.tracing.export.request import OtlpRequest
from telemetry.tracing.export.rows import (
    ROW,
    SpanDecodeError,
    SpanDecoder,
    encode,
    resource_line,
    row_of,
)
from telemetry.tracing.handlers import parent_context

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
RUN_ATTRIBUTES = {
    "messaging.system": "redis",
    "messaging.destination.name": "default",
    "messaging.message.id": "5c1f0a3e-1b9b-4c83-9d2c-1f3f5f0a9e11",
    "celery.task.retries": 0,
    "celery.task.outcome": "succeeded",
    "cached": True,
}


def make_spans(service: str, scope: str, **variant: Any) -> list[ReadableSpan]:
    """Spans of one process: run spans (plain) and, with ``variant``, one of another shape."""
    kept = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer(scope, "1.0")
    for number in range(3):
        tracer.start_span(
            f"run/t{number % 2}",
            context=parent_context(TRACEPARENT) if number else None,
            kind=SpanKind.CONSUMER,
            attributes={**RUN_ATTRIBUTES, "messaging.message.id": f"id-{number}"},
        ).end()
    if variant:
        span = tracer.start_span("other", **variant.pop("start", {}))
        for name, value in variant.items():
            getattr(span, name)(*value)
        span.end()
    return list(kept.get_finished_spans())


def datagram(spans: Sequence[ReadableSpan]) -> bytes:
    return encode(resource_line(spans[0].resource), [row_of(span) for span in spans])


def body_of(*datagrams: bytes) -> ExportTraceServiceRequest:
    request = OtlpRequest()
    for each in datagrams:
        request.add(each)
    return ExportTraceServiceRequest.FromString(request.take())


def sdk_encoding(*datagrams: bytes) -> ExportTraceServiceRequest:
    """What the SDK encodes for the same rows, decoded as the export process always did."""
    decoder = SpanDecoder()
    return encode_spans([span for each in datagrams for span in decoder.decode(each)])


def flattened(request: ExportTraceServiceRequest) -> list[tuple[bytes, bytes, bytes]]:
    """Every span with its resource and scope, in a canonical order: grouping may differ."""
    return sorted(
        (
            resource_spans.resource.SerializeToString(deterministic=True),
            scope_spans.scope.SerializeToString(deterministic=True),
            span.SerializeToString(deterministic=True),
        )
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    )


def test_plain_run_spans_encode_as_the_sdk_encodes_them() -> None:
    """Given run spans of two processes and scopes, rooted and under a remote parent,
    when their rows become one request, then each span is the SDK's, under its resource."""
    first = datagram(make_spans("a", "jobpilot.telemetry"))
    second = datagram(make_spans("b", "other.scope"))
    ours = body_of(first, second, first)
    sdk = sdk_encoding(first, second, first)
    assert len(flattened(ours)) == 9
    assert flattened(ours) == flattened(sdk)


def test_repeated_pieces_are_reused_without_mixing_types() -> None:
    """Given the same key with True and then 1, then each keeps its own type."""
    spans = make_spans("a", "s", set_attribute=("flag", True))
    spans += make_spans("a", "s", set_attribute=("flag", 1))
    ours = body_of(datagram(spans))
    assert flattened(ours) == flattened(sdk_encoding(datagram(spans)))
    values = [
        attribute.value.WhichOneof("value")
        for resource_spans in ours.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
        for attribute in span.attributes
        if attribute.key == "flag"
    ]
    assert values == ["bool_value", "int_value"]


@pytest.mark.parametrize(
    "variant",
    [
        {"add_event": ("retry", {"reason": "Boom"}, 123)},
        {"record_exception": (ValueError("bad"),)},
        {"set_attribute": ("ratio", 0.5)},
        {"set_attribute": ("tags", ("a", "b"))},
        {"set_attribute": ("huge", 1 << 70)},
        {"set_status": (Status(StatusCode.ERROR, "ValueError"),)},
        {"set_status": (Status(StatusCode.OK),)},
        {"start": {"links": [Link(SpanContext(7, 8, True, TraceFlags(1)), {"why": "x"})]}},
        {
            "start": {
                "context": parent_context(TRACEPARENT),
                "kind": SpanKind.PRODUCER,
            }
        },
    ],
)
def test_every_other_span_shape_encodes_as_the_sdk_encodes_it(variant: dict[str, Any]) -> None:
    spans = make_spans("a", "s", **variant)
    ours = body_of(datagram(spans))
    assert len(flattened(ours)) == 4
    assert flattened(ours) == flattened(sdk_encoding(datagram(spans)))


def test_a_trace_state_encodes_as_the_sdk_encodes_it() -> None:
    spans = make_spans("a", "s")
    with_state = json.loads(json.dumps(row_of(spans[0])))
    with_state[ROW.index("trace_state")] = TraceState([("k", "v"), ("x", "y")]).to_header()
    line = resource_line(spans[0].resource)
    assert flattened(body_of(encode(line, [with_state]))) == flattened(
        sdk_encoding(encode(line, [with_state]))
    )


def test_plain_spans_skip_the_sdk_encoder_once_their_origin_is_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spans = make_spans("a", "s")
    request = OtlpRequest()
    request.add(datagram(spans))
    calls: list[int] = []
    monkeypatch.setattr(
        otlp_request,
        "encode_spans",
        lambda spans: calls.append(len(spans)),  # type: ignore[func-returns-value]
    )
    request.add(datagram(spans))
    assert calls == []
    assert request.spans == 6


def test_the_piece_cache_starts_over_without_changing_the_encoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(span_pieces, "MAX_CACHED_PIECES", 3)
    datagrams = [datagram(make_spans(f"service-{n % 2}", "s")) for n in range(6)]
    assert flattened(body_of(*datagrams)) == flattened(sdk_encoding(*datagrams))


def test_take_starts_over() -> None:
    request = OtlpRequest()
    request.add(datagram(make_spans("a", "s")))
    assert len(flattened(ExportTraceServiceRequest.FromString(request.take()))) == 3
    assert request.spans == request.size == 0
    assert request.take() == b""


def valid_row() -> list[Any]:
    return json.loads(json.dumps(row_of(make_spans("a", "s")[0])))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trace_id", 1 << 130),
        ("span_id", -1),
        ("parent_span_id", 1 << 64),
        ("start_time", -5),
        ("kind", 9),
        ("status_code", 7),
        ("status_description", 12),
        ("scope_version", ["not", "a", "version"]),
        ("events", "not a list"),
    ],
)
def test_a_malformed_row_refuses_its_whole_datagram(field: str, value: object) -> None:
    """Given a datagram whose second row is malformed, then it is refused and its valid
    first row is not kept either."""
    bad = valid_row()
    bad[ROW.index(field)] = value
    request = OtlpRequest()
    with pytest.raises(SpanDecodeError):
        request.add(b"{}\n" + json.dumps([valid_row(), bad]).encode())
    assert request.spans == 0
    assert request.take() == b""
