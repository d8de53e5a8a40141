"""A span that crosses the export hop is what the SDK would have sent for the original.

The original is an SDK span, made by a real provider with small span limits. It
is ended into the pool side's relay, read back from the socket, decoded as the
export process decodes it, and encoded by the SDK's own OTLP encoder. The bytes
must equal the SDK's encoding of the original span: nothing is compared with a
decoded copy of itself.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.span import TraceState

from telemetry.tracing.export.decoder import SpanDecoder
from telemetry.tracing.export.relay import MAX_DATAGRAM_BYTES, DropCounter, SpanRelay

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
KEYS = st.text(alphabet="abcdefgh.", min_size=1, max_size=6)
SCALARS = st.one_of(
    st.text(max_size=12),
    st.booleans(),
    INT64,
    st.floats(allow_nan=False),
    st.binary(max_size=8),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(st.text(max_size=4), max_size=3),
    st.lists(INT64, max_size=3),
    st.lists(st.floats(allow_nan=False), max_size=3),
    st.lists(st.booleans(), max_size=3),
)
ATTRIBUTES = st.dictionaries(KEYS, VALUES, max_size=6)
IDS = st.integers(min_value=1, max_value=2**64 - 1)
STATES = st.one_of(
    st.none(), st.lists(st.tuples(st.sampled_from("kvx"), st.sampled_from(["1", "a"])), max_size=2)
)


def trace_state(pairs: list[tuple[str, str]] | None) -> TraceState | None:
    return None if pairs is None else TraceState(list(dict(pairs).items()))


@st.composite
def span_specs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "resource": (
            draw(ATTRIBUTES),
            draw(st.sampled_from(["", "https://opentelemetry.io/schemas/1.21.0"])),
        ),
        "scope": (
            draw(st.sampled_from(["opentelemetry.instrumentation.redis", "jobpilot.telemetry"])),
            draw(st.sampled_from([None, "0.66b1"])),
            draw(st.sampled_from([None, "https://opentelemetry.io/schemas/1.11.0"])),
            draw(st.one_of(st.none(), ATTRIBUTES)),
        ),
        "limits": draw(st.integers(min_value=1, max_value=4)),
        "kind": draw(st.sampled_from(list(SpanKind))),
        "parent": draw(st.one_of(st.none(), st.tuples(IDS, IDS, st.booleans(), STATES))),
        "attributes": draw(ATTRIBUTES),
        "events": draw(st.lists(st.tuples(st.text(max_size=8), ATTRIBUTES), max_size=5)),
        "links": draw(st.lists(st.tuples(IDS, IDS, st.booleans(), STATES, ATTRIBUTES), max_size=5)),
        "status": draw(
            st.one_of(
                st.none(),
                st.tuples(st.sampled_from([StatusCode.OK, StatusCode.ERROR]), st.text(max_size=10)),
            )
        ),
    }


def original_span(spec: dict[str, Any]) -> ReadableSpan:
    limit = spec["limits"]
    kept = InMemorySpanExporter()
    attributes, schema_url = spec["resource"]
    provider = TracerProvider(
        resource=Resource(attributes, schema_url or None),
        span_limits=SpanLimits(
            max_span_attributes=limit,
            max_events=limit,
            max_links=limit,
            max_event_attributes=limit,
            max_link_attributes=limit,
        ),
    )
    provider.add_span_processor(SimpleSpanProcessor(kept))
    name, version, scope_schema, scope_attributes = spec["scope"]
    tracer = provider.get_tracer(name, version, scope_schema, scope_attributes)
    context = None
    if spec["parent"] is not None:
        trace_id, span_id, remote, state = spec["parent"]
        parent = SpanContext(
            trace_id, span_id, remote, TraceFlags(TraceFlags.SAMPLED), trace_state(state)
        )
        context = trace.set_span_in_context(NonRecordingSpan(parent))
    links = [
        Link(SpanContext(t, s, remote, TraceFlags(1), trace_state(state)), attrs)
        for t, s, remote, state, attrs in spec["links"]
    ]
    span = tracer.start_span(
        "work", context=context, kind=spec["kind"], attributes=spec["attributes"], links=links
    )
    for index, (event, attrs) in enumerate(spec["events"]):
        span.add_event(event, attrs, timestamp=1_700_000_000_000_000_000 + index)
    if spec["status"] is not None:
        code, description = spec["status"]
        span.set_status(code, description if code is StatusCode.ERROR else None)
    span.end()
    [finished] = kept.get_finished_spans()
    return finished


def through_the_hop(span: ReadableSpan) -> Iterator[ReadableSpan]:
    """The span as the export process hands it to its exporter."""
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sender, receiver:
        drops = DropCounter()
        SpanRelay(sender, span.resource, drops).on_end(span)
        assert drops.count == 0
        yield from SpanDecoder().decode(receiver.recv(MAX_DATAGRAM_BYTES))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(span_specs())
def test_the_exported_bytes_are_the_sdks_encoding_of_the_original(spec: dict[str, Any]) -> None:
    original = original_span(spec)
    expected = encode_spans([original]).SerializeToString(deterministic=True)
    received = encode_spans(list(through_the_hop(original))).SerializeToString(deterministic=True)
    assert received == expected


def test_the_property_reaches_every_field_it_names() -> None:
    """The strategy is not vacuous: one example with every field set crosses intact, and
    its encoding does carry schema URLs, dropped counts and a local link."""
    spec = {
        "resource": ({"service.name": "x"}, "https://opentelemetry.io/schemas/1.21.0"),
        "scope": ("opentelemetry.instrumentation.redis", "0.66b1", "https://s/1.11.0", {"a": 1}),
        "limits": 1,
        "kind": SpanKind.CLIENT,
        "parent": (5, 6, False, [("k", "1")]),
        "attributes": {"a": b"\x00\xff", "b": [1, 2]},
        "events": [("e1", {"x": 1, "y": 2}), ("e2", {})],
        "links": [(7, 8, False, None, {"l": 1, "m": 2}), (9, 10, True, [("v", "a")], {})],
        "status": (StatusCode.ERROR, "boom"),
    }
    original = original_span(spec)
    [decoded] = through_the_hop(original)
    request = encode_spans([decoded])
    resource_spans = request.resource_spans[0]
    scope_spans = resource_spans.scope_spans[0]
    encoded = scope_spans.spans[0]
    assert resource_spans.schema_url == "https://opentelemetry.io/schemas/1.21.0"
    assert scope_spans.schema_url == "https://s/1.11.0"
    assert (encoded.dropped_attributes_count, encoded.dropped_events_count) == (1, 1)
    assert encoded.dropped_links_count == 1 and encoded.links[0].flags == 0x300  # remote link kept
    assert encoded.trace_state == "k=1"
    assert request.SerializeToString(deterministic=True) == encode_spans(
        [original]
    ).SerializeToString(deterministic=True)
