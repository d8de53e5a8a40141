"""Spans survive the hop to the export process exactly, and malformed datagrams are refused."""

from __future__ import annotations

import json

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from telemetry.tracing.export.decoder import SpanDecoder
from telemetry.tracing.export.rows import ROW, SpanDecodeError, encode, resource_line, row_of
from telemetry.tracing.handlers import parent_context

RESOURCE_LINE = b'[{"service.name": "codec"}, ""]\n'
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def sdk_span() -> ReadableSpan:
    """A span using every field a row carries."""
    kept = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "codec", "n": 3}))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("jobpilot.telemetry", "1.2")
    linked = SpanContext(7, 8, True, TraceFlags(1), TraceState([("k", "v")]))
    span = tracer.start_span(
        "apply_async/t",
        context=parent_context(TRACEPARENT),
        kind=SpanKind.PRODUCER,
        attributes={"s": "x", "i": 3, "f": 0.5, "b": True, "l": ("a", "b"), "nan": float("nan")},
        links=[Link(linked, {"why": "batch"})],
    )
    span.add_event("retry", {"reason": "Boom"}, timestamp=123)
    span.record_exception(ValueError("bad"))
    span.set_status(Status(StatusCode.ERROR, "ValueError"))
    span.end()
    return kept.get_finished_spans()[0]


def round_trip(span: ReadableSpan) -> ReadableSpan:
    datagram = encode(resource_line(span.resource), [row_of(span)])
    [decoded] = SpanDecoder().decode(datagram)
    return decoded


def test_a_span_encodes_to_the_same_otlp_after_the_hop() -> None:
    """Given an SDK span with every field set, when it crosses to the export process,
    then its OTLP protobuf encoding is byte for byte what it was."""
    original = sdk_span()
    decoded = round_trip(original)
    assert (
        encode_spans([decoded]).SerializeToString() == encode_spans([original]).SerializeToString()
    )


def test_bytes_and_text_that_looks_like_their_tag_both_survive_the_hop() -> None:
    """Given a bytes value and a string spelling the bytes tag, when they cross,
    then each comes back as it was, in a datagram with tags and in one without."""
    span = sdk_span()
    tagged = {"raw": b"\x00\xffjobpilot", "lookalike": "\x00bytes", "n": 3}
    untagged = {"lookalike": '{"\x00bytes": "AAE="}', "n": 3}
    for attributes in (tagged, untagged):
        fields = row_of(span)
        fields[ROW.index("attributes")] = attributes
        [decoded] = SpanDecoder().decode(encode(resource_line(span.resource), [fields]))
        assert dict(decoded.attributes or {}) == attributes


def test_one_resource_object_per_sending_process() -> None:
    span = sdk_span()
    decoder = SpanDecoder()
    datagram = encode(resource_line(span.resource), [row_of(span), row_of(span)])
    first = decoder.decode(datagram)[0]
    second = decoder.decode(datagram)[1]
    assert first.resource is second.resource
    assert dict(first.resource.attributes) == dict(span.resource.attributes)


def valid_row() -> list[object]:
    return json.loads(json.dumps(row_of(sdk_span())))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "datagram",
    [
        b"no resource line",
        b"{}\nnot json",
        b"[]\n[]",
        b"{}\n{}",
        b"{}\n[[1, 2]]",
    ],
)
def test_malformed_datagrams_are_refused(datagram: bytes) -> None:
    with pytest.raises(SpanDecodeError):
        SpanDecoder().decode(datagram)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trace_id", "abc"),
        ("span_id", 1.5),
        ("start_time", None),
        ("kind", True),
        ("attributes", []),
        ("name", 3),
        ("events", [["e", "soon", {}, 0]]),
        ("links", [[1, 2, "x", "", False, {}, 0]]),
        ("dropped_attributes", "3"),
        ("dropped_links", None),
        ("status_code", 99),
        ("events", [[1]]),
        ("scope", "jobpilot.telemetry"),
        ("scope", ["jobpilot.telemetry"]),
        ("scope", [1, None, None, {}]),
    ],
)
def test_a_row_with_a_mistyped_field_is_refused(field: str, value: object) -> None:
    fields = valid_row()
    fields[ROW.index(field)] = value
    with pytest.raises(SpanDecodeError):
        SpanDecoder().decode(RESOURCE_LINE + json.dumps([fields]).encode())


def test_the_valid_row_those_cases_start_from_decodes() -> None:
    [span] = SpanDecoder().decode(RESOURCE_LINE + json.dumps([valid_row()]).encode())
    assert span.name == "apply_async/t"
