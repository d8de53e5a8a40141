"""The export process's sink: decoded spans through the SDK's batch processor, guarded.

End to end (a real export process, a real OTLP/HTTP receiver) in test_relay.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry.settings import ConfigError
from telemetry.tracing.collector import CollectorState
from telemetry.tracing.export.process import SpanSink
from telemetry.tracing.export.rows import SpanDecodeError, encode, resource_line, row_of
from telemetry.tracing.providers import Batching, batching_from_environment


def datagram(count: int, name: str = "work") -> bytes:
    kept = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    for _ in range(count):
        provider.get_tracer("t").start_span(name).end()
    return encode(
        resource_line(provider.resource), [row_of(span) for span in kept.get_finished_spans()]
    )


class Failing(InMemorySpanExporter):
    """Fails every export, and counts the tries."""

    def __init__(self) -> None:
        super().__init__()
        self.tries = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.tries += 1
        return SpanExportResult.FAILURE


def test_every_span_of_every_datagram_reaches_the_exporter() -> None:
    kept = InMemorySpanExporter()
    sink = SpanSink(kept, CollectorState())
    sink.add(datagram(3, "first"))
    sink.add(datagram(2, "second"))
    sink.close()
    assert [span.name for span in kept.get_finished_spans()] == ["first"] * 3 + ["second"] * 2


def test_a_malformed_datagram_is_refused_and_the_next_one_still_exported() -> None:
    kept = InMemorySpanExporter()
    sink = SpanSink(kept, CollectorState())
    with pytest.raises(SpanDecodeError):
        sink.add(b"not a span")
    sink.add(datagram(1, "after"))
    sink.close()
    assert [span.name for span in kept.get_finished_spans()] == ["after"]


def test_after_a_failed_export_the_collector_is_not_tried_again_at_once() -> None:
    """Given a collector that fails, when batches keep coming, then one try is made per
    backoff period: the rest are dropped without a network attempt."""
    failing, state = Failing(), CollectorState()
    sink = SpanSink(failing, state)
    sink.add(datagram(1))
    sink.processor.force_flush()
    sink.add(datagram(1))
    sink.close()
    assert failing.tries == 1 and not state.reachable()


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
