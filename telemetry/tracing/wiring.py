"""The ``run`` span's receivers in a process that runs tasks; symmetric connect/disconnect.

    wiring = RunSpanWiring(provider, relay, system="redis", record_args=False, extensions=ext)
    wiring.connect()       # in each pool process after fork (the main process for solo/threads)

In a pool process (``relay_thread=True``) the ``run`` spans are sent by a
:class:`telemetry.tracing.export.relay.RelayThread`, after the task's result,
and ``worker_process_shutdown`` waits for its last sends.

A process that runs tasks also gets lazy database and Redis client spans
(``telemetry.tracing.client_spans``). Producer spans are connected with the
publish hooks (``telemetry.wiring.producer``), in every process.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_process_shutdown,
)
from opentelemetry.sdk.trace import TracerProvider

from telemetry import receivers
from telemetry.extensions import Extensions
from telemetry.tracing.client_spans import install_client_spans
from telemetry.tracing.export.relay import FLUSH_TIMEOUT_SECONDS, RelayThread, SpanRelay
from telemetry.tracing.handlers import ConsumerSpans

logger = logging.getLogger("telemetry.tracing.export")


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
        relay_thread: bool = False,
    ) -> None:
        self.provider = provider
        self.extensions = extensions
        self.relay_thread = RelayThread(relay) if relay is not None and relay_thread else None
        send = self.relay_thread.send if self.relay_thread else relay.send if relay else None
        self.consumer = ConsumerSpans(provider, send, system, record_args)
        consumer = self.consumer
        self.receivers: tuple[receivers.Receiver, ...] = (
            (task_prerun, consumer.on_task_prerun, "telemetry.trace.task_prerun"),
            (task_failure, consumer.on_task_failure, "telemetry.trace.task_failure"),
            (task_retry, consumer.on_task_retry, "telemetry.trace.task_retry"),
            (task_postrun, consumer.on_task_postrun, "telemetry.trace.task_postrun"),
        )
        if self.relay_thread is not None:
            self.receivers += ((worker_process_shutdown, self.flush, "telemetry.trace.flush"),)

    def flush(self, **_: Any) -> None:
        """Send every ended span before this process exits (``worker_process_shutdown``)."""
        if self.relay_thread is not None and not self.relay_thread.flush():
            logger.warning("spans still unsent after %.0f s at exit", FLUSH_TIMEOUT_SECONDS)

    def connect(self) -> None:
        receivers.connect(self.receivers)
        install_client_spans(self.provider, self.extensions)

    def disconnect(self) -> None:
        receivers.disconnect(self.receivers)
