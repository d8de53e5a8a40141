"""What a pool process does after the fork: serve nothing, observe nothing, forward
its publish counts to the main process, and trace the tasks it runs.

It acts only if its main process started the telemetry for ``celery.current_app``
before forking (``worker_process_init`` has no sender to filter on).
"""

from __future__ import annotations

from opentelemetry import trace

from telemetry.metrics.publish import PublishRecorder
from telemetry.tracing.export.supervisor import relayed_provider
from telemetry.tracing.handlers import INSTRUMENTATION, ProducerSpans
from telemetry.wiring.main_process import WorkerTelemetry
from telemetry.wiring.producer import PUBLISH_HOOKS


def become_pool_process(worker: WorkerTelemetry) -> None:
    """Turn the main process's telemetry, inherited through fork, into a pool process's."""
    settings = worker.settings
    worker.forget_observers()
    worker.otlp.pool_process()
    recorder = None
    if worker.server is not None:
        worker.server.close_inherited_socket()
        worker.forwarder.become_child()
        recorder = PublishRecorder(
            worker.forwarder.forward,
            settings.metrics_max_task_names,
            keep_argsrepr=settings.trace_task_args,
        )
    spans = None
    if worker.producer_spans is not None:
        # The global provider lives in pool processes only, set once after fork.
        if worker.export is not None:
            worker.export.in_pool_process()
        provider, relay = relayed_provider(worker.export, worker.hostname, worker.service)
        trace.set_tracer_provider(provider)
        worker.run_spans(provider, relay).connect()
        spans = ProducerSpans(provider.get_tracer(INSTRUMENTATION), worker.system)
    PUBLISH_HOOKS.take_over(recorder, spans)
