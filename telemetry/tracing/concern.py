"""A worker's traces, from ``worker_init`` to ``worker_shutdown``: a concern (``telemetry.wiring.concern``).

    tracing = Tracing(context)
    tracing.start(worker)    # the export process; main-process and producer spans
    tracing.pool_process()   # a pool process: its own provider and the run spans
    tracing.stop()           # the export process drained and flushed, within a bound

Each delivery's run span ids are drawn by the main process as it receives it
(``telemetry.tracing.run_ids``); the process that runs the task makes the span
around Celery's tracer (``telemetry.tracing.run_tracer``).

Prefork: the main process keeps a provider to itself, never installed
globally, since the global one is inherited through fork and can be set only
once; each pool process installs its own. Solo and threads pools run tasks in
the main process, so there the main process installs the global provider and
the run spans (which OpenTelemetry allows once per process: ``stop`` cannot
take the global provider back). Every provider hands its spans to the export
process (``telemetry.tracing.export``); with ``OTEL_TRACES_EXPORTER=none`` there
is none, and spans are still made and propagated.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from telemetry.delivery.observers import OBSERVERS
from telemetry.settings import ConfigError
from telemetry.tracing.attributes import INSTRUMENTATION
from telemetry.tracing.export.relay import SpanRelay
from telemetry.tracing.export.supervisor import ExportProcess, relayed_provider
from telemetry.tracing.handlers import MainProcessSpans, ProducerSpans
from telemetry.tracing.providers import exporter_from_environment
from telemetry.tracing.run_ids import RunIds
from telemetry.tracing.wiring import RunSpanWiring
from telemetry.wiring.concern import Concern
from telemetry.wiring.context import WorkerContext
from telemetry.wiring.producer import PUBLISH_HOOKS


class Tracing(Concern):
    """The export process, and the spans of whichever process this is."""

    def __init__(self, context: WorkerContext) -> None:
        self.context = context
        self.export: ExportProcess | None = None
        self.main_spans: MainProcessSpans | None = None
        self.run_spans: RunSpanWiring | None = None

    def start(self, worker: Any) -> None:
        """Raises ``SystemExit`` with one line on a bad ``OTEL_*`` exporter variable."""
        try:
            exporter = exporter_from_environment()
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None
        if exporter is not None:
            exporter.shutdown()  # built only to validate the variables; the export process builds its own
            settings = self.context.settings
            self.export = ExportProcess(settings.log_level, settings.log_format)
            self.export.start()
        provider, relay = relayed_provider(self.export, self.context.hostname, self.context.service)
        tracer = provider.get_tracer(INSTRUMENTATION)
        if not self.context.forks:
            trace.set_tracer_provider(provider)
            self._run_spans(provider, relay)
        before_run = self.run_spans.before_run if self.run_spans is not None else None
        self.main_spans = MainProcessSpans(
            tracer, self.context.system, RunIds(provider), before_run
        )
        OBSERVERS.add(self.main_spans)
        PUBLISH_HOOKS.trace_with(ProducerSpans(tracer, self.context.system))

    def stop(self) -> None:
        if self.run_spans is not None:
            self.run_spans.disconnect()
            self.run_spans = None
        self._forget()
        if self.export is not None:
            self.export.stop()

    def pool_process(self) -> None:
        self._forget()
        # The global provider lives in pool processes only, set once after fork.
        if self.export is not None:
            self.export.in_pool_process()
        provider, relay = relayed_provider(self.export, self.context.hostname, self.context.service)
        trace.set_tracer_provider(provider)
        self._run_spans(provider, relay)
        PUBLISH_HOOKS.trace_with(
            ProducerSpans(provider.get_tracer(INSTRUMENTATION), self.context.system)
        )

    def _run_spans(self, provider: TracerProvider, relay: SpanRelay | None) -> None:
        context = self.context
        self.run_spans = RunSpanWiring(
            context.app,
            provider,
            relay,
            context.system,
            context.settings.trace_task_args,
            context.extensions,
        )
        self.run_spans.connect()

    def _forget(self) -> None:
        if self.main_spans is not None:
            OBSERVERS.remove(self.main_spans)
