"""The lazy ``run`` span behaves as the SDK's span would, operation for operation, and a span
left alone crosses the hop as a record whose expansion is the SDK's span byte for byte."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from telemetry.tracing import run_span as run_span_module
from telemetry.tracing.attributes import INSTRUMENTATION
from telemetry.tracing.export.decoder import SpanDecoder
from telemetry.tracing.export.rows import _scope_row, encode, resource_line
from telemetry.tracing.export.run_records import RUN_RECORD, SCOPE_ROW
from telemetry.tracing.handlers import parent_context
from telemetry.tracing.run_span import RunSpan

SAMPLED_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
SPAN_ID = 0x5678
ATTRIBUTES = {
    "messaging.system": "redis",
    "messaging.destination.name": "default",
    "messaging.operation.type": "process",
    "messaging.message.id": "id-1",
    "celery.task.name": "t",
    "celery.task.retries": 2,
}


class FixedIds(IdGenerator):
    def generate_trace_id(self) -> int:
        return TRACE_ID

    def generate_span_id(self) -> int:
        return SPAN_ID


class Kept:
    """A relay that keeps what it is given, as datagrams the export process would read."""

    def __init__(self, provider: TracerProvider) -> None:
        self.line = resource_line(provider.resource)
        self.datagrams: list[bytes] = []

    def send(self, rows: Sequence[Sequence[Any]]) -> None:
        self.datagrams.append(encode(self.line, rows))

    def send_record(self, body: bytes) -> None:
        self.datagrams.append(self.line + b"\n" + body)

    def spans(self) -> list[ReadableSpan]:
        decoder = SpanDecoder()
        return [span for datagram in self.datagrams for span in decoder.decode(datagram)]


def sdk_run_span(provider: TracerProvider, kept: InMemorySpanExporter, act: Any) -> ReadableSpan:
    """The SDK's span for the same run: same parent, ids, attributes and operations."""
    span = provider.get_tracer(INSTRUMENTATION).start_span(
        "run/t",
        context=parent_context(SAMPLED_PARENT),
        kind=SpanKind.CONSUMER,
        attributes=dict(ATTRIBUTES),
    )
    act(span)
    [finished] = kept.get_finished_spans()
    return finished


def ours(relay: Kept | None, flags: int = 1, recording: bool = True) -> RunSpan:
    ids = (TRACE_ID, SPAN_ID, flags, PARENT_ID, recording)
    return RunSpan(
        ids, "t", "id-1", "default", 2, "redis", relay, InstrumentationScope(INSTRUMENTATION)
    )


def provider_with() -> tuple[TracerProvider, InMemorySpanExporter]:
    kept = InMemorySpanExporter()
    provider = TracerProvider(id_generator=FixedIds())
    provider.add_span_processor(SimpleSpanProcessor(kept))
    return provider, kept


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


def same_clock(monkeypatch: pytest.MonkeyPatch, sdk: ReadableSpan) -> None:
    times = iter([sdk.start_time, sdk.end_time])
    monkeypatch.setattr(run_span_module.time, "time_ns", lambda: next(times))


def test_the_same_operations_give_the_same_otlp_span(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the SDK's span and ours, under the same parent with the same ids and clock,
    when task code does the same things to each, then they encode identically."""
    provider, kept = provider_with()
    sdk = sdk_run_span(provider, kept, exercise)
    monkeypatch.setattr(run_span_module.time, "time_ns", lambda: sdk.start_time)
    relay = Kept(provider)
    span = ours(relay)
    exercise(span)
    [datagram] = relay.datagrams
    assert datagram.partition(b"\n")[2][:1] == b"["  # a JSON row: task code touched it
    assert (
        encode_spans(relay.spans()).SerializeToString() == encode_spans([sdk]).SerializeToString()
    )


def test_a_span_left_alone_is_a_record_that_expands_to_the_sdks_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The common case: the tracer ends it with its outcome, and nothing else touched it."""
    provider, kept = provider_with()

    def finish(span: Any) -> None:
        span.set_attribute("celery.task.outcome", "succeeded")
        span.end()

    sdk = sdk_run_span(provider, kept, finish)
    same_clock(monkeypatch, sdk)
    relay = Kept(provider)
    ours(relay).finish("succeeded")
    [datagram] = relay.datagrams
    assert datagram.partition(b"\n")[2][:1] == RUN_RECORD
    assert (
        encode_spans(relay.spans()).SerializeToString() == encode_spans([sdk]).SerializeToString()
    )


def test_the_records_scope_is_the_run_spans_scope() -> None:
    assert _scope_row(InstrumentationScope(INSTRUMENTATION)) == SCOPE_ROW


def test_a_failure_set_by_the_task_goes_as_a_row_with_the_sdks_exception_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, kept = provider_with()
    try:
        raise KeyError("missing")
    except KeyError as exc:
        error = exc

    def fail(span: Any) -> None:
        span.record_exception(error, timestamp=7)
        span.set_status(Status(StatusCode.ERROR, "KeyError"))
        span.set_attribute("celery.task.outcome", "failed")
        span.end()

    sdk = sdk_run_span(provider, kept, fail)
    same_clock(monkeypatch, sdk)
    relay = Kept(provider)
    span = ours(relay)
    span.record_exception(error, timestamp=7)
    span.set_status(Status(StatusCode.ERROR, "KeyError"))
    span.outcome = "failed"
    span.finish("succeeded")  # the failure's outcome stands
    [received] = relay.spans()
    assert received.events[0].attributes["exception.stacktrace"].endswith("KeyError: 'missing'\n")
    assert encode_spans([received]).SerializeToString() == encode_spans([sdk]).SerializeToString()


def test_nothing_is_built_until_read() -> None:
    span = ours(None)
    assert span._context is None and span._added is None and span._events is None
    context = span.get_span_context()
    assert (context.trace_id, context.span_id, context.is_remote) == (TRACE_ID, SPAN_ID, False)
    assert span.get_span_context() is context


@pytest.mark.parametrize(
    ("flags", "recording", "sent"), [(1, True, 1), (0, False, 0), (0, True, 0)]
)
def test_only_a_sampled_span_is_sent_and_only_a_recording_one_records(
    flags: int, recording: bool, sent: int
) -> None:
    provider, _ = provider_with()
    relay = Kept(provider)
    span = ours(relay, flags, recording)
    span.set_attribute("k", "v")
    assert span.is_recording() is recording and (span._added is not None) is recording
    span.finish("succeeded")
    assert len(relay.datagrams) == sent
    assert span.get_span_context().trace_flags.sampled is bool(flags)
