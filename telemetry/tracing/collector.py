"""A collector that may be down: the "unreachable until" time forked processes share,
the exporter wrapper that consults it, and export failures logged at most once a minute.

After a failed export, batches drop without a network attempt for
:data:`UNREACHABLE_BACKOFF_SECONDS`, and exit flushes are skipped meanwhile
(``telemetry.tracing.providers.flush_within``).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry.log_throttle import LogThrottle

# The name export failures have always been logged under.
logger = logging.getLogger("telemetry.tracing.providers")

#: After a failed export, exit flushes are skipped for this long.
UNREACHABLE_BACKOFF_SECONDS = 30.0


class CollectorState:
    """The shared "unreachable until" time, in memory that forked processes inherit."""

    def __init__(self) -> None:
        self._until = multiprocessing.Value("d", 0.0, lock=False)
        # Shared too: forked processes log once a minute between them.
        self._log = LogThrottle()

    def mark_unreachable(self, reason: str) -> None:
        self._until.value = time.time() + UNREACHABLE_BACKOFF_SECONDS
        if self._log.due():
            logger.warning(
                "span export failed (%s); spans are dropped until the collector answers", reason
            )

    def reachable(self) -> bool:
        until: float = self._until.value
        return time.time() >= until

    def attempt(self, export: Callable[[], bool]) -> bool:
        """Run ``export`` unless the collector is known to be down; a failure marks it down."""
        if not self.reachable():
            # Dropped without a try: one process retries per backoff period.
            return False
        try:
            succeeded = export()
        except Exception as exc:
            self.mark_unreachable(type(exc).__name__)
            return False
        if not succeeded:
            self.mark_unreachable("export failed")
        return succeeded


class GuardedExporter(SpanExporter):
    """Wraps an exporter: failures are remembered across processes and logged once a minute."""

    def __init__(self, inner: SpanExporter, state: CollectorState) -> None:
        self.inner = inner
        self.state = state

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.state.attempt(lambda: self.inner.export(spans) is SpanExportResult.SUCCESS):
            return SpanExportResult.SUCCESS
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


class OncePerInterval(logging.Filter):
    """Lets a logger's warnings through at most once per interval (the SDK logs every failure)."""

    def __init__(self) -> None:
        super().__init__()
        self._log = LogThrottle()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING or self._log.due()


NOISY_EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk._shared_internal",
)


def quiet_export_failures() -> None:
    """Export failures and dropped spans are logged at most once a minute, per logger."""
    for name in NOISY_EXPORT_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, OncePerInterval) for f in log.filters):
            log.addFilter(OncePerInterval())
