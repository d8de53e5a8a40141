"""Connects the span handlers in each kind of process; symmetric connect/disconnect.

A process that runs tasks also gets lazy database and Redis client spans.
"""

from __future__ import annotations

from typing import Any

from celery.signals import (
    after_task_publish,
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_process_shutdown,
)
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from telemetry.client_spans import install_client_spans
from telemetry.spans import INSTRUMENTATION, ConsumerSpans, ProducerSpans
from telemetry.tracing import CollectorState, flush_within


class ProducerWiring:
    """Producer spans in any process (a worker's main process too)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.spans = ProducerSpans(tracer)
        self.pairs = (
            (
                before_task_publish,
                self.spans.on_before_task_publish,
                "jobpilot.trace.before_publish",
            ),
            (after_task_publish, self.spans.on_after_task_publish, "jobpilot.trace.after_publish"),
        )

    def connect(self) -> None:
        for signal, handler, uid in self.pairs:
            signal.connect(handler, weak=False, dispatch_uid=uid)

    def disconnect(self) -> None:
        for signal, _, uid in self.pairs:
            signal.disconnect(dispatch_uid=uid)


class PoolProcessWiring:
    """Consumer and producer spans in a pool process, flushed (bounded) when it exits."""

    def __init__(
        self, provider: TracerProvider, state: CollectorState, record_args: bool = False
    ) -> None:
        self.provider = provider
        self.state = state
        tracer = provider.get_tracer(INSTRUMENTATION)
        self.consumer = ConsumerSpans(tracer, record_args)
        self.producer = ProducerWiring(tracer)
        self.pairs: tuple[tuple[Any, Any, str], ...] = (
            (task_prerun, self.consumer.on_task_prerun, "jobpilot.trace.prerun"),
            (task_failure, self.consumer.on_task_failure, "jobpilot.trace.failure"),
            (task_retry, self.consumer.on_task_retry, "jobpilot.trace.retry"),
            (task_postrun, self.consumer.on_task_postrun, "jobpilot.trace.postrun"),
            (worker_process_shutdown, self.on_worker_process_shutdown, "jobpilot.trace.exit"),
        )

    def connect(self) -> None:
        for signal, handler, uid in self.pairs:
            signal.connect(handler, weak=False, dispatch_uid=uid)
        self.producer.connect()
        install_client_spans(self.provider)

    def disconnect(self) -> None:
        for signal, _, uid in self.pairs:
            signal.disconnect(dispatch_uid=uid)
        self.producer.disconnect()

    def on_worker_process_shutdown(self, **_: Any) -> None:
        flush_within(self.provider, self.state)
