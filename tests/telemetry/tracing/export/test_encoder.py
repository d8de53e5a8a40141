"""The contained encoder's requests are the SDK's encoding of the same spans, byte for byte.

Batches mix run records (from real run spans left alone) with spans that cross the hop
as rows (a run span task code touched, a producer span, a client span of another
scope) and come from more than one process. Each is decoded twice, as the export
process decodes it for the contained encoder and for the SDK's, and the two
requests must be equal bytes; the exporter's POST carries those bytes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind

from telemetry.delivery.observers import OUTCOMES
from telemetry.tracing.attributes import INSTRUMENTATION
from telemetry.tracing.export.decoder import SpanDecoder
from telemetry.tracing.export.encoder import RecordEncoder, RecordExporter
from telemetry.tracing.export.relay import DropCounter, SpanRelay
from telemetry.tracing.export.rows import SpanDecodeError, encode, resource_line
from telemetry.tracing.export.run_records import RecordSpan, pack_run
from telemetry.tracing.run_span import RunSpan

IDS = st.integers(min_value=1, max_value=2**64 - 1)
TEXT = st.text(max_size=12)


class Sent:
    """A pool process's relay: what it sends, kept as datagrams in ``datagrams`` (which
    several relays may share, as the processes of a worker share the socket)."""

    def __init__(self, resource: Resource, datagrams: list[bytes] | None = None) -> None:
        self.line = resource_line(resource)
        self.datagrams: list[bytes] = [] if datagrams is None else datagrams

    def send(self, rows: Sequence[Sequence[Any]]) -> None:
        self.datagrams.append(encode(self.line, rows))

    def send_record(self, body: bytes) -> None:
        self.datagrams.append(self.line + b"\n" + body)


def both_ways(datagrams: list[bytes]) -> tuple[bytes, bytes]:
    """The contained encoder's request and the SDK's, for the same datagrams."""
    ours, sdks = SpanDecoder(), SpanDecoder()
    kept = [span for d in datagrams for span in ours.decode_keeping_records(d)]
    assert any(type(span) is RecordSpan for span in kept)
    contained = RecordEncoder(ours.span).encode(kept).SerializePartialToString()
    sdk = encode_spans([span for d in datagrams for span in sdks.decode(d)])
    return contained, sdk.SerializePartialToString()


@st.composite
def run_spans(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "ids": (
            draw(st.integers(min_value=1, max_value=2**128 - 1)),
            draw(IDS),
            draw(st.sampled_from([1, 3])),
            draw(st.one_of(st.just(0), IDS)),
            True,
        ),
        "task": draw(st.sampled_from(["a", "b", "naïve.task"])),
        "message_id": draw(TEXT),
        "queue": draw(st.sampled_from(["default", "q,2"])),
        "retries": draw(st.integers(min_value=0, max_value=2**40)),
        "outcome": draw(st.sampled_from([o for o in OUTCOMES if o != "rejected"])),
        "touched": draw(st.booleans()),
        "process": draw(st.integers(min_value=0, max_value=1)),
    }


PROCESSES = [
    Resource({"service.name": "w", "pid": 1}, "https://opentelemetry.io/schemas/1.21.0"),
    Resource({"service.name": "w", "pid": 2}),
]


def datagrams_of(specs: list[dict[str, Any]]) -> list[bytes]:
    """What the specified run spans send, from the processes the specs name, in order."""
    datagrams: list[bytes] = []
    relays = [Sent(resource, datagrams) for resource in PROCESSES]
    scope = InstrumentationScope(INSTRUMENTATION)
    for spec in specs:
        relay = relays[spec["process"]]
        span = RunSpan(
            spec["ids"],
            spec["task"],
            spec["message_id"],
            spec["queue"],
            spec["retries"],
            "redis",
            relay,
            scope,
        )
        if spec["touched"]:
            span.set_attribute("user.id", 7)
        span.finish(spec["outcome"])
    return datagrams


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(run_spans(), min_size=1, max_size=12))
def test_a_batch_of_records_and_rows_is_the_sdks_request(specs: list[dict[str, Any]]) -> None:
    specs[0]["touched"] = False  # at least one record
    contained, sdk = both_ways(datagrams_of(specs))
    assert contained == sdk


def test_other_scopes_and_kinds_join_the_same_request() -> None:
    """A producer span and a client span of another scope, between run records."""
    provider = TracerProvider(resource=PROCESSES[0])
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sender, receiver:
        relay = SpanRelay(sender, provider.resource, DropCounter())
        provider.add_span_processor(relay)
        records = Sent(provider.resource)
        scope = InstrumentationScope(INSTRUMENTATION)
        for n in range(3):
            RunSpan(
                (n + 1, n + 7, 1, 9, True), "t", f"id{n}", "q", 0, "redis", records, scope
            ).finish("succeeded")
            provider.get_tracer("redis.client", "0.66b1").start_span(
                "PUBLISH", kind=SpanKind.CLIENT
            ).end()
        provider.get_tracer(INSTRUMENTATION).start_span(
            "apply_async/t", kind=SpanKind.PRODUCER
        ).end()
        rows = [receiver.recv(1 << 20) for _ in range(4)]
    contained, sdk = both_ways([records.datagrams[0], rows[0], *records.datagrams[1:], *rows[1:]])
    assert contained == sdk


def test_a_malformed_record_is_refused_on_arrival() -> None:
    body = pack_run(1, 2, 1, 0, "succeeded", 3, 4, 0, b"redis", b"q", b"t", b"m")
    line = resource_line(PROCESSES[0])
    decoder = SpanDecoder()
    for broken in (body[:-1], body + b"x", body[:-1] + b"\xff", body[:10]):
        with pytest.raises(SpanDecodeError):
            decoder.decode_keeping_records(line + b"\n" + broken)
        with pytest.raises(SpanDecodeError):
            decoder.decode(line + b"\n" + broken)


@pytest.fixture
def posted() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", bodies
    server.shutdown()


def test_the_exporter_posts_the_encoded_request(posted: tuple[str, list[bytes]]) -> None:
    endpoint, bodies = posted
    datagrams = datagrams_of(
        [
            {
                "ids": (5, 6, 1, 7, True),
                "task": "t",
                "message_id": "m",
                "queue": "q",
                "retries": 1,
                "outcome": "succeeded",
                "touched": touched,
                "process": 0,
            }
            for touched in (False, True, False)
        ]
    )
    decoder = SpanDecoder()
    exporter = RecordExporter(endpoint=endpoint, timeout=2)
    exporter.encoder = RecordEncoder(decoder.span)
    spans = [span for d in datagrams for span in decoder.decode_keeping_records(d)]
    assert exporter.export(spans).name == "SUCCESS"  # type: ignore[arg-type]
    exporter.shutdown()
    assert bodies == [both_ways(datagrams)[1]]


def test_another_exporter_release_keeps_the_sdks_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The contained encoder follows one release's export(); any other gets the SDK's."""
    from telemetry.tracing.export import encoder
    from telemetry.tracing.providers import exporter_from_environment

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    assert encoder.contained()  # the release the tests run
    assert isinstance(exporter_from_environment(records=True), RecordExporter)
    monkeypatch.setattr(encoder, "CONTAINED_RELEASE", "1.46.")
    chosen = exporter_from_environment(records=True)
    assert chosen is not None and type(chosen) is not RecordExporter
