"""The ``run`` span's ids and sampling decision, drawn once per delivery, when it is received.

    draw = RunIds(provider)                    # the provider of the process that receives
    ids = draw(traceparent, attributes)        # (trace id, span id, flags, parent id, recording)

A worker's main process draws them when it builds a delivery's Request
(``telemetry.tracing.handlers.MainProcessSpans.on_received``) and writes them
into the request (``telemetry.messages.RUN_SPAN``), which Celery hands to the
process that runs the task. The main process is then the one process that
decides, whatever ``OTEL_TRACES_SAMPLER`` says, and its exemplars, the pool
process's log lines and spans, and the failed-work records agree on the ids
without building a span. A retry, a redelivery or a requeue is a new delivery
and gets new ids: ids are never derived from the task id, which they share.

What is kept from the SDK, as ``Tracer.start_span`` does it: the provider's id
generator names the span (and the trace, when the message has no parent), its
sampler decides, and the W3C "random trace id" flag follows the generator or
the parent. The SDK's own samplers whose decision depends on nothing but the
parent's sampled flag (``always_on``, ``always_off``, ``parentbased_always_on``,
the default, and ``parentbased_always_off``) are decided from that flag without
building a parent context: tests/telemetry/tracing/test_run_ids.py holds that
shortcut to ``should_sample``. Any other sampler is asked, with the span's
name, kind and attributes; a trace state or attributes it adds travel with the
ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import (
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBased,
    Sampler,
    StaticSampler,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from telemetry.messages import SAMPLED_FLAG, parse_traceparent

#: The W3C level-2 "random trace id" flag, where this opentelemetry-api has it.
RANDOM_TRACE_ID: int = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
#: The flags a remote parent passes on: sampled, and a random trace id.
KNOWN_FLAGS = SAMPLED_FLAG | RANDOM_TRACE_ID

#: The run span's ids: see ``telemetry.messages.RUN_SPAN``.
RunSpanIds = tuple[Any, ...]
#: The span's attributes, built only for a sampler that must be asked.
Attributes = Callable[[], dict[str, Any]]


def remote_parent(traceparent: Any) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a well-formed ``traceparent`` with non-zero ids."""
    parsed = parse_traceparent(traceparent)
    if parsed is None or not parsed[0] or not parsed[1]:
        return None
    trace_id, span_id, flags = parsed
    return trace_id, span_id, flags & KNOWN_FLAGS


def _static(sampler: Sampler) -> bool | None:
    """An SDK static sampler's decision (sampled or dropped); None for any other."""
    if type(sampler) is not StaticSampler:
        return None
    decision = sampler.should_sample(None, 1, "").decision
    return {Decision.RECORD_AND_SAMPLE: True, Decision.DROP: False}.get(decision)


def _parent_based_static(sampler: Sampler) -> bool | None:
    """The root decision of the SDK's ``parentbased_always_on`` or ``_off``; None for any other."""
    if type(sampler) is not ParentBased:
        return None
    description = sampler.get_description()  # type: ignore[no-untyped-call]
    if description == DEFAULT_ON.get_description():  # type: ignore[no-untyped-call]
        return True
    if description == DEFAULT_OFF.get_description():  # type: ignore[no-untyped-call]
        return False
    return None


class RunIds:
    """Draws a run span's ids and decides its sampling; see the module docstring."""

    def __init__(self, provider: TracerProvider) -> None:
        self.sampler = provider.sampler
        self.ids = provider.id_generator
        self.random_trace_ids = RANDOM_TRACE_ID if self.ids.is_trace_id_random() else 0
        #: Decided by the static sampler itself, whatever the parent.
        self.static = _static(self.sampler)
        #: Decided by the parent's flag, or this when there is none.
        self.root = _parent_based_static(self.sampler)

    def __call__(self, traceparent: Any, name: str, attributes: Attributes) -> RunSpanIds:
        """The ids of a run span under ``traceparent`` (None or malformed: a new trace)."""
        parent = remote_parent(traceparent)
        if parent is None:
            trace_id = self.ids.generate_trace_id()
            parent_id, random_flag = 0, self.random_trace_ids
        else:
            trace_id, parent_id, parent_flags = parent
            random_flag = parent_flags & RANDOM_TRACE_ID
        span_id = self.ids.generate_span_id()
        if self.static is not None:
            sampled = self.static
        elif self.root is not None:
            sampled = self.root if parent is None else bool(parent[2] & SAMPLED_FLAG)
        else:
            return self._asked(trace_id, span_id, parent, random_flag, name, attributes())
        flags = (SAMPLED_FLAG if sampled else 0) | random_flag
        return (trace_id, span_id, flags, parent_id, sampled)

    def _asked(
        self,
        trace_id: int,
        span_id: int,
        parent: tuple[int, int, int] | None,
        random_flag: int,
        name: str,
        attributes: dict[str, Any],
    ) -> RunSpanIds:
        """The sampler's own decision, with whatever trace state and attributes it adds."""
        context = None
        if parent is not None:
            remote = SpanContext(parent[0], parent[1], True, TraceFlags(parent[2]))
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        result = self.sampler.should_sample(context, trace_id, name, SpanKind.CONSUMER, attributes)
        sampled = result.decision.is_sampled()  # type: ignore[no-untyped-call]
        flags = (SAMPLED_FLAG if sampled else 0) | random_flag
        recording = bool(result.decision.is_recording())  # type: ignore[no-untyped-call]
        parent_id = parent[1] if parent is not None else 0
        added = dict(result.attributes or {})
        state = result.trace_state.to_header() if result.trace_state else ""
        if not recording or (added == attributes and not state):
            return (trace_id, span_id, flags, parent_id, recording)
        return (trace_id, span_id, flags, parent_id, recording, state, added)
