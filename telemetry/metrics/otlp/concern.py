"""OTLP metrics as one concern of a process's telemetry: ``start``, ``ready``, ``stop``.

    otlp = OtlpMetrics(WorkerReadings(...))   # None with METRICS_ENABLED=false
    otlp.start(worker)      # worker_init: read the variables (a bad one: one line, exit)
    otlp.ready(consumer)    # worker_ready: export every OTEL_METRIC_EXPORT_INTERVAL
    otlp.stop()             # worker_shutdown: the last export, bounded

Off unless ``OTEL_METRICS_EXPORTER`` names ``otlp`` (``telemetry.metrics.otlp.environment``).
The points are derived from the series behind ``/metrics``, so with
``METRICS_ENABLED=false`` there are none to send, and one line says so. The
export runs in the main process only: pool processes forward what they do to
it, and the export thread does not survive the fork (:meth:`pool_process`).
"""

from __future__ import annotations

import logging
from typing import Any

from telemetry.metrics.otlp.environment import export_config, export_notes
from telemetry.metrics.otlp.exporter import MetricExport
from telemetry.metrics.otlp.readings import Readings
from telemetry.settings import ConfigError
from telemetry.tracing.providers import worker_resource
from telemetry.tracing.service import Service
from telemetry.wiring.concern import Concern

logger = logging.getLogger("telemetry.metrics.otlp")


class OtlpMetrics(Concern):
    """The OTLP metric export of one process, from ``readings``; a worker concern
    (``telemetry.wiring.concern``): nothing process-wide, everything starts with the worker."""

    def __init__(self, readings: Readings | None, service: Service | None = None) -> None:
        """``readings``: None when the worker keeps no series (``METRICS_ENABLED=false``);
        ``service``: the resource's service defaults (``telemetry.tracing.service``)."""
        self.readings = readings
        self.service = service or Service()
        self.export: MetricExport | None = None
        self._notes: list[str] = []

    def configure(self, hostname: str | None = None) -> None:
        """Read the variables and build the export, not started yet.

        Raises:
            ConfigError: naming the first unusable variable.
        """
        config = export_config()
        self._notes = export_notes()
        if config is None:
            return
        if self.readings is None:
            self._notes.append(
                "telemetry: OTEL_METRICS_EXPORTER names otlp, but METRICS_ENABLED=false: "
                "the OTLP metrics are derived from the worker's series, so none are exported"
            )
            return
        self.export = MetricExport(config, worker_resource(self.service, hostname), self.readings)

    def start(self, worker: Any) -> None:
        """``worker_init``: a bad variable is one ``settings:`` line and a non-zero exit."""
        try:
            self.configure(str(getattr(worker, "hostname", "") or "") or None)
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None

    def ready(self, consumer: Any) -> None:
        """``worker_ready``: logging is set up by now; export from here on."""
        for note in self._notes:
            logger.warning(note)
        if self.export is not None:
            self.export.start()
            logger.info(
                "telemetry: exporting metrics over OTLP (%s) every %g s",
                self.export.config.protocol,
                self.export.config.interval_seconds,
            )

    def pool_process(self) -> None:
        """In a forked pool process: nothing runs here (the thread did not survive the fork)."""
        self.export = None

    def stop(self) -> None:
        if self.export is not None:
            self.export.stop()
            self.export = None
