"""A plain span sent already encoded reaches either exporter path as the SDK would encode it."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode

from telemetry.tracing.export.encoded import ENCODED, DatagramDecoder, EncodedSpans, encoded_head
from telemetry.tracing.export.pieces import envelope_parts
from telemetry.tracing.export.relay import DropCounter, SpanRelay
from telemetry.tracing.export.request import OtlpRequest
from telemetry.tracing.export.rows import SpanDecodeError
from telemetry.tracing.handlers import parent_context
from telemetry.tracing.run_span import start_task_span
from tests.telemetry.tracing.export.test_request import RUN_ATTRIBUTES, TRACEPARENT, flattened

RESOURCE = Resource.create({"service.name": "worker", "process.pid": 42, "tags": ("a", "b")})


class Captured:
    """A socket's place for the relay: keeps each datagram."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def send(self, datagram: bytes) -> int:
        self.datagrams.append(datagram)
        return len(datagram)


def relayed(
    end_spans: Callable[[TracerProvider, SpanRelay], None],
) -> tuple[list[bytes], list[ReadableSpan]]:
    """The datagrams a relay sends for the spans ``end_spans`` ends, and the SDK's own spans."""
    captured = Captured()
    relay = SpanRelay(captured, RESOURCE, DropCounter())  # type: ignore[arg-type]
    kept = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(relay)
    provider.add_span_processor(SimpleSpanProcessor(kept))
    end_spans(provider, relay)
    return captured.datagrams, list(kept.get_finished_spans())


def run_spans(provider: TracerProvider, relay: SpanRelay) -> None:
    tracer = provider.get_tracer("jobpilot.telemetry", "2.0")
    for number, status in enumerate((Status(StatusCode.UNSET), Status(StatusCode.ERROR, "Boom"))):
        tracer.start_span(
            f"run/t{number}",
            context=parent_context(TRACEPARENT) if number else None,
            kind=SpanKind.CONSUMER,
            attributes={**RUN_ATTRIBUTES, "celery.task.retries": -3 * number},
        ).end()
        span = tracer.start_span("ok", kind=SpanKind.INTERNAL)
        span.set_status(status)
        span.end()


def test_plain_spans_travel_encoded_and_arrive_as_the_sdk_encodes_them() -> None:
    """Given plain SDK spans ended through the relay, then each went as an encoded datagram,
    and the request body holds exactly the SDK's encoding of them."""
    datagrams, spans = relayed(run_spans)
    assert [d[:1] for d in datagrams] == [ENCODED] * 4
    request = OtlpRequest()
    for datagram in datagrams * 2:
        request.add(datagram)
    body = ExportTraceServiceRequest.FromString(request.take())
    assert flattened(body) == flattened(encode_spans(spans * 2))
    assert len(body.resource_spans) == 1  # grouped under one resource and scope


def test_a_task_span_travels_encoded() -> None:
    """Given the run span of a task, sent as a pool process sends it, then it is encoded and
    the request holds it as the SDK encodes the same row."""

    def task(provider: TracerProvider, relay: SpanRelay) -> None:
        span = start_task_span(
            provider,
            InstrumentationScope("jobpilot.telemetry"),
            relay.send,
            "run/t",
            None,
            dict(RUN_ATTRIBUTES),
        )
        span.end()

    [datagram], _ = relayed(task)
    assert datagram[:1] == ENCODED
    request = OtlpRequest()
    request.add(datagram)
    [span] = DatagramDecoder().decode(datagram)
    assert flattened(ExportTraceServiceRequest.FromString(request.take())) == flattened(
        encode_spans([span])
    )


def test_other_spans_travel_as_json_rows() -> None:
    def with_event(provider: TracerProvider, relay: SpanRelay) -> None:
        span = provider.get_tracer("s").start_span("evented")
        span.add_event("step")
        span.end()

    datagrams, _ = relayed(with_event)
    assert [d[:1] for d in datagrams] == [b"{"]


def test_other_exporters_get_back_the_sdk_spans_that_were_sent() -> None:
    """Given encoded datagrams, then the SDK spans decoded from them encode as the originals."""
    datagrams, spans = relayed(run_spans)
    decoder = DatagramDecoder()
    decoded = [span for datagram in datagrams for span in decoder.decode(datagram)]
    assert [span.resource.attributes for span in decoded] == [RESOURCE.attributes] * 4
    assert flattened(encode_spans(decoded)) == flattened(encode_spans(spans))


def good_datagram() -> bytes:
    datagrams, _ = relayed(run_spans)
    return datagrams[0]


def with_span(span: bytes, envelope: tuple[bytes, bytes] | None = None) -> bytes:
    head = encoded_head(envelope or envelope_parts(RESOURCE, InstrumentationScope("s")))
    return head + span


def span_bytes(**fields: Any) -> bytes:
    base: dict[str, Any] = {"trace_id": bytes(range(16)), "span_id": bytes(range(8)), "name": "n"}
    return trace_pb2.Span(**{**base, **fields}).SerializeToString()


@pytest.mark.parametrize(
    "datagram",
    [
        ENCODED,
        ENCODED + struct.pack("<II", 10**6, 0) + b"x",
        good_datagram()[:-1],
        with_span(b"\xff\xff\xff"),
        with_span(span_bytes(trace_id=bytes(15))),
        with_span(span_bytes(span_id=b"")),
        with_span(span_bytes(parent_span_id=bytes(4))),
        with_span(span_bytes(kind=9)),
        with_span(
            span_bytes(), (trace_pb2.ResourceSpans(scope_spans=[{}]).SerializeToString(), b"")
        ),
        with_span(span_bytes(), (b"\x0a\x03abc", b"")),
    ],
    ids=[
        "bare byte",
        "sizes past the end",
        "truncated span",
        "not protobuf",
        "short trace id",
        "no span id",
        "short parent id",
        "unknown kind",
        "resource holding spans",
        "resource not protobuf",
    ],
)
def test_malformed_encoded_datagrams_are_refused_by_both_paths(datagram: bytes) -> None:
    request = OtlpRequest()
    with pytest.raises(SpanDecodeError):
        request.add(datagram)
    assert request.spans == 0
    assert request.take() == b""
    with pytest.raises(SpanDecodeError):
        DatagramDecoder().decode(datagram)


def test_a_resource_value_the_sdk_cannot_hold_is_refused() -> None:
    kvlist = trace_pb2.ResourceSpans.FromString(
        envelope_parts(RESOURCE, InstrumentationScope("s"))[0]
    )
    kvlist.resource.attributes.add(key="map").value.kvlist_value.values.add(key="k")
    datagram = with_span(span_bytes(), (kvlist.SerializeToString(), b""))
    with pytest.raises(SpanDecodeError, match="kvlist_value"):
        EncodedSpans().checked(datagram)
    with pytest.raises(SpanDecodeError, match="kvlist_value"):
        DatagramDecoder().decode(datagram)
