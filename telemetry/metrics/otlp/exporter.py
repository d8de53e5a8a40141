"""One process's OTLP metric export: the SDK's instruments and exporter, on a thread of its own.

    export = MetricExport(config, resource, readings)
    export.start()                 # every config.interval_seconds
    export.stop()                  # one last export, bounded

Counters and gauges are the SDK's observable instruments, on a ``MeterProvider``
this export keeps to itself (never the global one) with an on-demand reader; the
histograms are built from bucket counts (``telemetry.metrics.otlp.histograms``).
Both go to the SDK's OTLP exporter in one request per interval.

Why a thread of our own rather than the SDK's ``PeriodicExportingMetricReader``:
that reader restarts its thread in every forked child (``os.register_at_fork``),
so each prefork pool process would export its stale copy of the main process's
numbers under the same identity. A plain thread does not survive a fork. Why the
main process rather than the span export process: the numbers live in the main
process's memory; copying them out each interval would cost more than encoding
them here, once a minute by default.

The export is bounded and quiet when the collector is down, like the span export:
the SDK exporter gives up after its timeout (``OTEL_EXPORTER_OTLP_TIMEOUT``,
10 s by default), nothing is queued for a retry (a cumulative point carries
every count so far; a delta interval that failed is dropped, as the SDK's own
reader drops it), one warning per minute at most says the export fails, the
SDK exporter's own lines go through the same throttle, and the last export at
``stop`` is skipped while the collector is known down and never waits more than
:data:`STOP_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import logging
import threading
import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from telemetry.log_throttle import LogThrottle
from telemetry.metrics.otlp.environment import MetricExportConfig
from telemetry.metrics.otlp.histograms import HistogramBuilder, HistogramReading
from telemetry.metrics.otlp.names import SCOPE
from telemetry.metrics.otlp.readings import Derived, Readings
from telemetry.tracing.collector import OncePerInterval
from telemetry.version import __version__

logger = logging.getLogger("telemetry.metrics.otlp")

#: ``stop`` waits at most this long for the last export.
STOP_TIMEOUT_SECONDS = 2.0
#: The SDK exporters' loggers: an export failure logs there on every attempt.
EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
)


class MetricExport:
    """Collects and exports one process's metrics; :meth:`start` runs it every interval."""

    def __init__(
        self,
        config: MetricExportConfig,
        resource: Resource,
        readings: Readings,
        exporter: MetricExporter | None = None,
    ) -> None:
        """``exporter``: the SDK's OTLP exporter from ``config`` unless given (tests)."""
        self.config = config
        self.resource = resource
        self.exporter = exporter if exporter is not None else config.exporter()
        self.scope = InstrumentationScope(SCOPE, __version__)
        self.reader = InMemoryMetricReader(preferred_temporality=dict(config.temporality))
        self.provider = MeterProvider(
            metric_readers=[self.reader], resource=resource, shutdown_on_exit=False
        )
        meter = self.provider.get_meter(SCOPE, __version__)
        for observed in readings.observed():
            instrument = observed.instrument
            create = (
                meter.create_observable_counter
                if instrument.kind == "counter"
                else meter.create_observable_gauge
            )
            create(instrument.name, [observed.callback], instrument.unit, instrument.description)
        start_ns = time.time_ns()
        temporality = config.histogram_temporality
        self.histograms = [
            (derived, HistogramBuilder(derived.instrument, derived.bounds, temporality, start_ns))
            for derived in readings.derived()
        ]
        self.succeeded = True
        self._log = LogThrottle()
        self._read_log = LogThrottle()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._quiet = OncePerInterval()

    def collect(self) -> MetricsData:
        """The observable instruments' points and the histograms', as of now, in one request."""
        metrics: list[Metric] = []
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data is not None else ():
            for scope_metrics in resource_metrics.scope_metrics:
                metrics.extend(scope_metrics.metrics)
        now_ns = time.time_ns()
        for derived, build in self.histograms:
            readings = self._read(derived)
            if readings is not None:
                metric = build(readings, now_ns)
                if metric.data.data_points:  # OTLP has no metric without a point
                    metrics.append(metric)
        return MetricsData(
            [ResourceMetrics(self.resource, [ScopeMetrics(self.scope, metrics, "")], "")]
        )

    def _read(self, derived: Derived) -> list[HistogramReading] | None:
        readings = derived.read()
        if readings is None and self._read_log.due():
            logger.warning(
                "%s left out of this export: its buckets changed throughout the read",
                derived.instrument.name,
            )
        return None if readings is None else list(readings)

    def export(self) -> bool:
        """Collect and export once; never raises. Whether the collector took it."""
        try:
            result = self.exporter.export(
                self.collect(), timeout_millis=self.config.timeout_seconds * 1000
            )
            succeeded = result is MetricExportResult.SUCCESS
            reason = "the collector refused it or did not answer"
        except Exception as exc:  # the type only: a message may name the endpoint
            succeeded, reason = False, type(exc).__name__
        if not succeeded and self._log.due():
            logger.warning(
                "metric export failed (%s); the next try in %g s",
                reason,
                self.config.interval_seconds,
            )
        self.succeeded = succeeded
        return succeeded

    def start(self) -> None:
        for name in EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(self._quiet)
        self._thread = threading.Thread(target=self._run, name="otlp-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval_seconds):
            self.export()
        if self.succeeded:  # the last values, unless the collector is known down
            self.export()

    def stop(self) -> None:
        """The last export (bounded), then the exporter and provider shut down."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(min(STOP_TIMEOUT_SECONDS, self.config.timeout_seconds))
        try:
            self.exporter.shutdown()  # also ends a retry still waiting
            self.provider.shutdown()
        except Exception as exc:
            logger.warning("metric export shutdown failed: %s", type(exc).__name__)
        for name in EXPORTER_LOGGERS:
            logging.getLogger(name).removeFilter(self._quiet)
