"""The export process posts OTLP/HTTP batches built from rows; other exporters get SDK spans.

End to end (a real export process, real OTLP/HTTP receiver) in test_span_relay.py.
"""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry.settings import ConfigError
from telemetry.tracing.export.process import RequestSink, SdkSink, sink_for
from telemetry.tracing.export.rows import encode, resource_line, row_of
from telemetry.tracing.providers import Batching, CollectorState, batching_from_environment
from tests.telemetry.tracing.export.test_encoded import relayed, run_spans


def datagram(count: int, name: str = "work") -> bytes:
    kept = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    for _ in range(count):
        provider.get_tracer("t").start_span(name).end()
    return encode(
        resource_line(provider.resource), [row_of(span) for span in kept.get_finished_spans()]
    )


class Posts:
    """The exporter client's place: keeps each body; fails while told to."""

    def __init__(self) -> None:
        self.bodies: list[ExportTraceServiceRequest] = []
        self.failing = False
        self.shut_down = False

    def post(self, body: bytes) -> bool:
        self.bodies.append(ExportTraceServiceRequest.FromString(body))
        return not self.failing

    def shutdown(self) -> None:
        self.shut_down = True

    def sizes(self) -> list[int]:
        return [
            sum(len(s.spans) for r in body.resource_spans for s in r.scope_spans)
            for body in self.bodies
        ]


def sink(posts: Posts, max_spans: int = 512, delay: float = 60.0) -> RequestSink:
    return RequestSink(posts.post, posts.shutdown, CollectorState(), Batching(max_spans, delay))


def test_the_installed_otlp_http_exporter_gets_request_bodies() -> None:
    """The fast path depends on the exporter's client; an upgrade that changes it fails here."""
    assert isinstance(
        sink_for(OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")), RequestSink
    )
    assert isinstance(sink_for(ConsoleSpanExporter()), SdkSink)


def test_a_full_batch_is_posted_at_once_and_the_rest_when_due() -> None:
    posts = Posts()
    batches = sink(posts, max_spans=4, delay=0.0)
    for _ in range(3):
        batches.add(datagram(2))
    assert posts.sizes() == [4]
    batches.tick()
    assert posts.sizes() == [4, 2]
    batches.tick()
    assert posts.sizes() == [4, 2]


def test_a_batch_waits_for_its_delay() -> None:
    posts = Posts()
    batches = sink(posts, delay=60.0)
    batches.add(datagram(3))
    batches.tick()
    assert posts.sizes() == []
    batches.close()
    assert posts.sizes() == [3]
    assert posts.shut_down


def test_after_a_failed_post_batches_are_dropped_without_a_try() -> None:
    """Given a collector that refused a batch, then the next batches within the backoff
    are dropped without a post, as the SDK path does (telemetry.tracing.providers.CollectorState)."""
    posts = Posts()
    posts.failing = True
    batches = sink(posts, max_spans=1)
    batches.add(datagram(1))
    posts.failing = False
    batches.add(datagram(1))
    batches.close()
    assert posts.sizes() == [1]


def test_other_exporters_get_sdk_spans() -> None:
    """Given a JSON datagram of three spans and an encoded one, then all four are exported."""
    encoded = relayed(run_spans)[0][0]
    kept = InMemorySpanExporter()
    spans = SdkSink(kept, CollectorState())
    spans.add(datagram(3, "console"))
    spans.add(encoded)
    spans.close()
    assert [span.name for span in kept.get_finished_spans()] == ["console"] * 3 + ["run/t0"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1.5"),
        ("OTEL_BSP_SCHEDULE_DELAY", "-1"),
        ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
    ],
)
def test_unusable_batching_variables_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        batching_from_environment()


def test_batching_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "250")
    assert batching_from_environment() == Batching(64, 0.25)
    monkeypatch.delenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
    monkeypatch.delenv("OTEL_BSP_SCHEDULE_DELAY")
    assert batching_from_environment() == Batching(512, 1.0)
