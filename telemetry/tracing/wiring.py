"""The ``run`` spans of a process that runs tasks; symmetric connect/disconnect.

    wiring = RunSpanWiring(app, provider, relay, system="redis", record_args=False, extensions=ext)
    wiring.connect()       # in each pool process after fork (the main process for solo/threads)
    wiring.disconnect()    # the tracers, receivers and client instrumentors connect() changed

The run spans are made around each task's Celery tracer
(``telemetry.tracing.run_tracer``). A process that runs tasks also gets lazy
database and Redis client spans (``telemetry.tracing.client_spans``). Producer
spans are connected with the publish hooks (``telemetry.wiring.producer``), in
every process.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from opentelemetry.sdk.trace import TracerProvider

from telemetry.extensions import Extensions
from telemetry.tracing.client_spans import ClientSpans
from telemetry.tracing.export.relay import SpanRelay
from telemetry.tracing.run_tracer import RunTracer


class RunSpanWiring:
    """Run and client spans in a process that runs tasks.

    Its spans go to the export process as they end (``telemetry.tracing.export``),
    so an exiting pool process has nothing to flush.
    """

    def __init__(
        self,
        app: Celery,
        provider: TracerProvider,
        relay: SpanRelay | None,
        system: str,
        record_args: bool,
        extensions: Extensions,
    ) -> None:
        self.client_spans = ClientSpans(provider, extensions)
        self.tracer = RunTracer(app, provider, relay, system, record_args)

    def connect(self) -> None:
        self.tracer.wrap()
        self.client_spans.instrument()

    def before_run(self, task: Any) -> None:
        """Solo and threads pools: a consumer (re)start rebuilds the tracers it runs."""
        self.tracer.ensure(task)

    def disconnect(self) -> None:
        self.tracer.unwrap()
        self.client_spans.uninstrument()
