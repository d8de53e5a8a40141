"""The lean ``run`` span behaves as the SDK's span would, operation for operation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from telemetry.tracing import run_span as task_span
from telemetry.tracing.export.decoder import SpanDecoder
from telemetry.tracing.export.rows import encode, resource_line
from telemetry.tracing.handlers import INSTRUMENTATION, parent_context, remote_parent
from telemetry.tracing.run_span import TaskSpan, start_task_span

SAMPLED_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNSAMPLED_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
ATTRIBUTES = {"messaging.system": "redis", "celery.task.retries": 0}


class FixedIds(IdGenerator):
    def generate_trace_id(self) -> int:
        return 0x1234

    def generate_span_id(self) -> int:
        return 0x5678


class RecordOnly(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


def provider_with(sampler: Sampler = ALWAYS_ON) -> tuple[TracerProvider, InMemorySpanExporter]:
    kept = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, id_generator=FixedIds())
    provider.add_span_processor(SimpleSpanProcessor(kept))
    return provider, kept


def lean(provider: TracerProvider, traceparent: str | None, rows: list[Any] | None = None) -> Any:
    def send(batch: Sequence[Sequence[Any]]) -> None:
        if rows is not None:
            rows.extend(batch)

    return start_task_span(
        provider,
        InstrumentationScope(INSTRUMENTATION),
        send,
        "run/t",
        remote_parent(traceparent),
        dict(ATTRIBUTES),
    )


def exercise(span: Any) -> None:
    """What task code might do with the current span."""
    span.set_attribute("user.id", 7)
    span.set_attributes({"tenant": "acme", "bad": {"not": "allowed"}})
    span.add_event("step", {"n": 1}, timestamp=5)
    span.add_link(SpanContext(9, 10, True, TraceFlags(1)), {"why": "batch"})
    span.record_exception(ValueError("boom"), timestamp=6)
    span.set_status(StatusCode.ERROR, "ValueError")
    span.set_status(Status(StatusCode.UNSET))
    span.update_name("run/renamed")
    span.end(end_time=100)
    span.set_attribute("after.end", 1)
    span.end(end_time=200)


def test_the_same_operations_give_the_same_otlp_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the SDK's span and ours, started under the same parent with the same ids and
    clock, when task code does the same things to each, then they encode identically."""
    provider, kept = provider_with()
    sdk = provider.get_tracer(INSTRUMENTATION).start_span(
        "run/t",
        context=parent_context(SAMPLED_PARENT),
        kind=SpanKind.CONSUMER,
        attributes=dict(ATTRIBUTES),
    )
    exercise(sdk)
    started = kept.get_finished_spans()[0].start_time
    monkeypatch.setattr(task_span.time, "time_ns", lambda: started)
    rows: list[Any] = []
    ours = lean(provider, SAMPLED_PARENT, rows)
    assert isinstance(ours, TaskSpan)
    exercise(ours)
    assert len(rows) == 1
    [decoded] = SpanDecoder().decode(encode(resource_line(provider.resource), rows))
    assert (
        encode_spans([decoded]).SerializeToString()
        == encode_spans(kept.get_finished_spans()).SerializeToString()
    )


@pytest.mark.parametrize(
    ("sampler", "traceparent"),
    [
        (ALWAYS_ON, None),
        (ALWAYS_OFF, None),
        (ParentBased(ALWAYS_OFF), SAMPLED_PARENT),
        (ParentBased(ALWAYS_ON), UNSAMPLED_PARENT),
        (TraceIdRatioBased(0.0), None),
        (RecordOnly(), SAMPLED_PARENT),
    ],
)
def test_the_sampler_decides_as_for_an_sdk_span(sampler: Sampler, traceparent: str | None) -> None:
    provider, kept = provider_with(sampler)
    sdk = provider.get_tracer(INSTRUMENTATION).start_span(
        "run/t", context=parent_context(traceparent), kind=SpanKind.CONSUMER
    )
    rows: list[Any] = []
    ours = lean(provider, traceparent, rows)
    assert ours.is_recording() == sdk.is_recording()
    assert ours.get_span_context() == sdk.get_span_context()
    sdk.end()
    ours.end()
    assert len(rows) == len(kept.get_finished_spans())


def test_a_span_without_an_exporter_still_carries_the_context() -> None:
    provider, _ = provider_with()
    span = start_task_span(
        provider,
        InstrumentationScope(INSTRUMENTATION),
        None,
        "run/t",
        remote_parent(SAMPLED_PARENT),
        {},
    )
    assert span.get_span_context().trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    span.end()
