"""Metrics over OTLP under the messaging semantic-convention names, derived from ``/metrics``'s series.

    OTEL_METRICS_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 \\
        celery -A app worker

A worker (and the broker exporter) then sends ``messaging.process.duration``,
``messaging.client.consumed.messages``, ``messaging.client.sent.messages``,
``celery.queue.depth``, ``celery.queue.oldest_message.age``,
``celery.task.queue_wait.duration`` and ``celery.task.finished`` every
``OTEL_METRIC_EXPORT_INTERVAL``. The modules: ``names`` (names, units, attributes
and the series behind each), ``environment`` (the ``OTEL_*`` variables),
``readings`` (what is read from the series), ``histograms`` (buckets into the SDK's
data types), ``exporter`` (the SDK's instruments and exporter, on a thread) and
``concern`` (its start, ready and stop). ``docs/otlp-metrics.md`` is the reference.
"""

from __future__ import annotations

from telemetry.metrics.otlp.concern import OtlpMetrics

__all__ = ["OtlpMetrics"]
