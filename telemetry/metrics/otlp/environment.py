"""Whether and how metrics go out over OTLP, from the standard ``OTEL_*`` variables alone.

    config = export_config()      # None when off; ConfigError (one line) on a bad value
    exporter = config.exporter()  # the SDK's OTLP metric exporter

* ``OTEL_METRICS_EXPORTER``, a comma-separated list: on only when it names
  ``otlp``. Unset means none here, unlike the SDK's default, because ``/metrics``
  is the worker's primary path; ``prometheus`` (that is ``/metrics``) and ``none``
  are accepted, any other name refused. ``opentelemetry-distro`` sets ``otlp``.
* ``OTEL_SDK_DISABLED=true`` turns every signal off, these metrics too.
* ``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``:
  ``http/protobuf`` (the default here, as for spans) or ``grpc`` (the grpc extra).
* ``OTEL_EXPORTER_OTLP(_METRICS)_ENDPOINT``, ``_HEADERS``, ``_TIMEOUT``,
  ``_COMPRESSION`` and the TLS ones are read by the SDK's exporter itself.
* ``OTEL_METRIC_EXPORT_INTERVAL`` (ms, default 60000) and ``OTEL_METRIC_EXPORT_TIMEOUT``
  (ms, default 30000): positive numbers, else refused.
* ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``: ``cumulative`` (default),
  ``delta`` or ``lowmemory``, with the SDK's table of instrument kinds; any other
  value is refused (the SDK would warn and fall back to cumulative).
* ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``: the histograms are
  derived from the worker's explicit buckets, so ``base2_exponential_bucket_histogram``
  cannot apply; :func:`export_notes` says so in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter

from telemetry.settings import ConfigError
from telemetry.tracing.providers import sdk_disabled

EXPORTER_VARIABLE = "OTEL_METRICS_EXPORTER"
TEMPORALITY_VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
AGGREGATION_VARIABLE = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
INTERVAL_VARIABLE = "OTEL_METRIC_EXPORT_INTERVAL"
TIMEOUT_VARIABLE = "OTEL_METRIC_EXPORT_TIMEOUT"
#: The SDK's defaults, in milliseconds.
DEFAULT_INTERVAL_MILLIS = 60_000.0
DEFAULT_TIMEOUT_MILLIS = 30_000.0
EXPORTER_NAMES = ("otlp", "prometheus", "none")
PROTOCOLS = ("http/protobuf", "grpc")

_CUMULATIVE, _DELTA = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA
#: The SDK's table (``opentelemetry.exporter.otlp.common._aggregation``), by preference.
TEMPORALITIES: Mapping[str, Mapping[type, AggregationTemporality]] = {
    "cumulative": {
        Counter: _CUMULATIVE,
        UpDownCounter: _CUMULATIVE,
        Histogram: _CUMULATIVE,
        ObservableCounter: _CUMULATIVE,
        ObservableUpDownCounter: _CUMULATIVE,
        ObservableGauge: _CUMULATIVE,
    },
    "delta": {
        Counter: _DELTA,
        UpDownCounter: _CUMULATIVE,
        Histogram: _DELTA,
        ObservableCounter: _DELTA,
        ObservableUpDownCounter: _CUMULATIVE,
        ObservableGauge: _CUMULATIVE,
    },
    "lowmemory": {
        Counter: _DELTA,
        UpDownCounter: _CUMULATIVE,
        Histogram: _DELTA,
        ObservableCounter: _CUMULATIVE,
        ObservableUpDownCounter: _CUMULATIVE,
        ObservableGauge: _CUMULATIVE,
    },
}


@dataclass(frozen=True)
class MetricExportConfig:
    """Where, how often and with which temporality the metrics go out."""

    protocol: str
    interval_seconds: float
    timeout_seconds: float
    temporality: Mapping[type, AggregationTemporality]
    exporter_class: Callable[..., MetricExporter]

    @property
    def histogram_temporality(self) -> AggregationTemporality:
        """The derived histograms' temporality: the SDK's for a histogram instrument."""
        return self.temporality[Histogram]

    def exporter(self) -> MetricExporter:
        """The SDK's exporter for the protocol; it reads its endpoint, headers and timeout itself."""
        return self.exporter_class(preferred_temporality=dict(self.temporality))


def exporter_names() -> list[str]:
    raw = os.environ.get(EXPORTER_VARIABLE, "")
    return [name.strip().lower() for name in raw.split(",") if name.strip()]


def export_config() -> MetricExportConfig | None:
    """The export ``OTEL_*`` asks for; None when it asks for none.

    Raises:
        ConfigError: naming the first unusable variable.
    """
    names = exporter_names()
    unknown = sorted(set(names) - set(EXPORTER_NAMES))
    if unknown:
        raise ConfigError(
            EXPORTER_VARIABLE, f"must name otlp, prometheus or none, not {', '.join(unknown)}"
        )
    if "otlp" not in names or sdk_disabled():
        return None
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or ""
    ).strip() or "http/protobuf"
    variable = (
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
        if os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        else "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    preference = os.environ.get(TEMPORALITY_VARIABLE, "").strip().lower() or "cumulative"
    if preference not in TEMPORALITIES:
        raise ConfigError(TEMPORALITY_VARIABLE, "must be cumulative, delta or lowmemory")
    return MetricExportConfig(
        protocol=protocol,
        interval_seconds=positive_millis(INTERVAL_VARIABLE, DEFAULT_INTERVAL_MILLIS) / 1000,
        timeout_seconds=positive_millis(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_MILLIS) / 1000,
        temporality=MappingProxyType(dict(TEMPORALITIES[preference])),
        exporter_class=exporter_class(protocol, variable),
    )


def exporter_class(protocol: str, variable: str) -> Callable[..., MetricExporter]:
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )
        except ImportError:
            raise ConfigError(
                variable, "grpc needs the extra: pip install 'jobpilot-telemetry[grpc]'"
            ) from None
        grpc_class: Callable[..., MetricExporter] = GrpcMetricExporter
        return grpc_class
    raise ConfigError(variable, "must be http/protobuf or grpc")


def positive_millis(variable: str, default: float) -> float:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ConfigError(variable, f"must be a positive number of milliseconds, not {raw!r}")
    return value


def export_notes() -> list[str]:
    """What the variables ask for that is not done, one line each, to log once logging is up."""
    notes = []
    if "otlp" in exporter_names() and sdk_disabled():
        notes.append(
            "telemetry: OTEL_METRICS_EXPORTER names otlp, but OTEL_SDK_DISABLED=true: "
            "no metrics are exported over OTLP"
        )
    aggregation = os.environ.get(AGGREGATION_VARIABLE, "").strip().lower()
    if aggregation not in ("", "explicit_bucket_histogram"):
        notes.append(
            f"telemetry: {AGGREGATION_VARIABLE} is not applied: the OTLP histograms are "
            "derived from the worker's explicit buckets"
        )
    return notes
