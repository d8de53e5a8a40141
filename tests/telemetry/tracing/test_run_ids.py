"""Run span ids drawn at receipt: the sampler decides as for an SDK span, ids never repeat."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind
from opentelemetry.trace.span import TraceState

from telemetry.tracing.handlers import parent_context
from telemetry.tracing.run_ids import RunIds

SAMPLED_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
UNSAMPLED_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
ATTRIBUTES = {"messaging.system": "redis", "celery.task.retries": 0}


class FixedIds(IdGenerator):
    def generate_trace_id(self) -> int:
        return 0x1234

    def generate_span_id(self) -> int:
        return 0x5678


class Tagging(Sampler):
    """A sampler of the kind that must be asked: it adds an attribute and a trace state."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(
            Decision.RECORD_ONLY, {"sampled.by": "tagging"}, TraceState([("vendor", "x")])
        )

    def get_description(self) -> str:
        return "Tagging"


SAMPLERS = [
    ALWAYS_ON,
    ALWAYS_OFF,
    DEFAULT_ON,
    DEFAULT_OFF,
    StaticSampler(Decision.RECORD_ONLY),
    ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON),
    TraceIdRatioBased(0.0),
    TraceIdRatioBased(1.0),
    ParentBased(TraceIdRatioBased(0.0)),
    Tagging(),
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.get_description()[:40])
@pytest.mark.parametrize("traceparent", [None, SAMPLED_PARENT, UNSAMPLED_PARENT, "garbage"])
def test_the_sampler_decides_as_for_an_sdk_span(sampler: Sampler, traceparent: str | None) -> None:
    """Given the same sampler and ids, the drawn ids carry what the SDK's span context holds."""
    provider = TracerProvider(sampler=sampler, id_generator=FixedIds())
    sdk = provider.get_tracer("t").start_span(
        "run/t", context=parent_context(traceparent), kind=SpanKind.CONSUMER, attributes=ATTRIBUTES
    )
    context = sdk.get_span_context()
    ids = RunIds(provider)(traceparent, "run/t", lambda: dict(ATTRIBUTES))
    trace_id, span_id, flags, parent_id, recording = ids[:5]
    assert (trace_id, span_id, flags) == (
        context.trace_id,
        context.span_id,
        int(context.trace_flags),
    )
    assert recording is sdk.is_recording()
    assert parent_id == (
        0x00F067AA0BA902B7 if traceparent in (SAMPLED_PARENT, UNSAMPLED_PARENT) else 0
    )
    if len(ids) > 5:  # what the sampler added travels with the ids
        assert ids[5] == context.trace_state.to_header()
        assert ids[6] == dict(sdk.attributes or {})  # type: ignore[attr-defined]
    else:
        assert not context.trace_state
        assert not sdk.is_recording() or dict(sdk.attributes or {}) == ATTRIBUTES  # type: ignore[attr-defined]


def test_the_default_samplers_are_decided_without_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    for sampler in (ALWAYS_ON, ALWAYS_OFF, DEFAULT_ON, DEFAULT_OFF):
        draw = RunIds(TracerProvider(sampler=sampler))

        def asked(*_: Any, **__: Any) -> None:
            raise AssertionError("the sampler was asked")

        monkeypatch.setattr(sampler, "should_sample", asked)
        draw(SAMPLED_PARENT, "run/t", dict)
        draw(None, "run/t", dict)
        monkeypatch.undo()


def test_every_delivery_gets_ids_of_its_own() -> None:
    """A retry, a redelivery or a requeue shares the task id and the parent, never the span id."""
    draw = RunIds(TracerProvider())
    drawn = [draw(SAMPLED_PARENT, "run/t", dict) for _ in range(1000)]
    assert len({ids[1] for ids in drawn}) == 1000
    assert {ids[0] for ids in drawn} == {0x4BF92F3577B34DA6A3CE929D0E0E4736}
    roots = [draw(None, "run/t", dict) for _ in range(1000)]
    assert len({ids[0] for ids in roots}) == 1000 and all(ids[3] == 0 for ids in roots)


def test_a_span_started_from_the_ids_is_the_parent_of_client_spans() -> None:
    """What a client instrumentation reads of the current span is the drawn context."""
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from telemetry.tracing.run_span import RunSpan

    provider = TracerProvider()
    ids = RunIds(provider)(SAMPLED_PARENT, "run/t", dict)
    run = RunSpan(ids, "t", "id", "q", 0, "redis", None, InstrumentationScope("x"))
    child = provider.get_tracer("db").start_span("SELECT", context=trace.set_span_in_context(run))
    assert child.parent is not None  # type: ignore[attr-defined]
    assert (child.parent.trace_id, child.parent.span_id) == (ids[0], ids[1])  # type: ignore[attr-defined]
    assert child.get_span_context().trace_id == ids[0]


class Received:
    """What the main process's observer reads of a delivery's Request."""

    def __init__(self, name: str, fields: dict[str, Any]) -> None:
        self.type = name
        self.id = "task-1"
        self.request_dict = fields
        self.delivery_info = {"routing_key": "default"}
        self.task = object()


def test_each_receipt_writes_new_ids_into_the_request_and_the_exemplar_follows_them() -> None:
    from telemetry.messages import HEALTH_TASK, RUN_SPAN, exemplar_trace_id
    from telemetry.tracing.handlers import MainProcessSpans

    provider = TracerProvider()
    before_run: list[object] = []
    observer = MainProcessSpans(
        provider.get_tracer("t"), "redis", RunIds(provider), before_run.append
    )
    # Given a redelivered message: the ids of its first delivery came back with it
    fields: dict[str, Any] = {"traceparent": SAMPLED_PARENT, RUN_SPAN: (1, 2, 1, 0, True)}
    observer.on_received(Received("t", fields))
    first = fields[RUN_SPAN]
    assert first[1] != 2 and first[0] == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    observer.on_received(Received("t", fields))
    assert fields[RUN_SPAN][1] != first[1]
    assert exemplar_trace_id(fields) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert len(before_run) == 2
    # A root trace's exemplar names the run span's new trace; an unsampled one, none
    root: dict[str, Any] = {}
    observer.on_received(Received("t", root))
    assert exemplar_trace_id(root) == f"{root[RUN_SPAN][0]:032x}"
    unsampled: dict[str, Any] = {"traceparent": UNSAMPLED_PARENT}
    observer.on_received(Received("t", unsampled))
    assert exemplar_trace_id(unsampled) is None
    # The health task gets none; ids that came over the wire (a list) are not ids
    health: dict[str, Any] = {}
    observer.on_received(Received(HEALTH_TASK, health))
    assert RUN_SPAN not in health
    assert (
        exemplar_trace_id({RUN_SPAN: [1, 2, 1, 0, True], "traceparent": UNSAMPLED_PARENT}) is None
    )
