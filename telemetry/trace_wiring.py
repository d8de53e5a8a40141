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
)
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from telemetry.client_spans import install_client_spans
from telemetry.span_relay import SpanRelay
from telemetry.spans import INSTRUMENTATION, ConsumerSpans, ProducerSpans

#: The ``run`` span's receivers in a pool process: (signal, dispatch uid), in the order
#: of ``ConsumerSpans``' prerun, failure, retry and postrun handlers.
RUN_SPAN_RECEIVERS = (
    (task_prerun, "jobpilot.trace.prerun"),
    (task_failure, "jobpilot.trace.failure"),
    (task_retry, "jobpilot.trace.retry"),
    (task_postrun, "jobpilot.trace.postrun"),
)


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
    """Consumer and producer spans in a pool process.

    Its provider hands each span to the export process as it ends
    (``telemetry.span_relay``), so an exiting pool process has nothing to flush.
    """

    def __init__(
        self, provider: TracerProvider, relay: SpanRelay | None, record_args: bool = False
    ) -> None:
        self.provider = provider
        tracer = provider.get_tracer(INSTRUMENTATION)
        self.consumer = ConsumerSpans(provider, relay.send if relay else None, record_args)
        self.producer = ProducerWiring(tracer)
        handlers = (
            self.consumer.on_task_prerun,
            self.consumer.on_task_failure,
            self.consumer.on_task_retry,
            self.consumer.on_task_postrun,
        )
        self.pairs: tuple[tuple[Any, Any, str], ...] = tuple(
            (signal, handler, uid)
            for (signal, uid), handler in zip(RUN_SPAN_RECEIVERS, handlers, strict=True)
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
