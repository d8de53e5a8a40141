"""The ``run`` span's receivers in a process that runs tasks; symmetric connect/disconnect.

    wiring = RunSpanWiring(provider, relay, system="redis", record_args=False, extensions=ext)
    wiring.connect()       # in each pool process after fork (the main process for solo/threads)
    wiring.disconnect()    # the receivers, and the client instrumentors connect() instrumented

A process that runs tasks also gets lazy database and Redis client spans
(``telemetry.tracing.client_spans``). Producer spans are connected with the
publish hooks (``telemetry.wiring.producer``), in every process.
"""

from __future__ import annotations

from celery.signals import task_failure, task_postrun, task_prerun, task_retry
from opentelemetry.sdk.trace import TracerProvider

from telemetry import receivers
from telemetry.extensions import Extensions
from telemetry.tracing.client_spans import ClientSpans
from telemetry.tracing.export.relay import SpanRelay
from telemetry.tracing.handlers import ConsumerSpans


class RunSpanWiring:
    """Consumer spans in a process that runs tasks.

    Its provider hands each span to the export process as it ends
    (``telemetry.tracing.export``), so an exiting pool process has nothing to flush.
    """

    def __init__(
        self,
        provider: TracerProvider,
        relay: SpanRelay | None,
        system: str,
        record_args: bool,
        extensions: Extensions,
    ) -> None:
        self.client_spans = ClientSpans(provider, extensions)
        self.consumer = ConsumerSpans(provider, relay.send if relay else None, system, record_args)
        consumer = self.consumer
        self.receivers: tuple[receivers.Receiver, ...] = (
            (task_prerun, consumer.on_task_prerun, "telemetry.trace.task_prerun"),
            (task_failure, consumer.on_task_failure, "telemetry.trace.task_failure"),
            (task_retry, consumer.on_task_retry, "telemetry.trace.task_retry"),
            (task_postrun, consumer.on_task_postrun, "telemetry.trace.task_postrun"),
        )

    def connect(self) -> None:
        receivers.connect(self.receivers)
        self.client_spans.instrument()

    def disconnect(self) -> None:
        receivers.disconnect(self.receivers)
        self.client_spans.uninstrument()
