"""The OTLP metric export from the standard variables: off unless otlp is named, bad values refused."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter, ObservableGauge
from opentelemetry.sdk.metrics.export import AggregationTemporality

from telemetry.metrics.otlp.environment import export_config, export_notes
from telemetry.settings import ConfigError

CUMULATIVE, DELTA = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA


@pytest.mark.parametrize("value", [None, "", "none", "prometheus", "none,prometheus"])
def test_off_unless_otlp_is_named(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is not None:
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", value)
    assert export_config() is None


def test_otlp_alone_or_in_a_list_turns_it_on_with_the_sdk_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus, OTLP")
    config = export_config()
    assert config is not None
    assert (config.protocol, config.interval_seconds, config.timeout_seconds) == (
        "http/protobuf",
        60.0,
        30.0,
    )
    assert config.histogram_temporality is CUMULATIVE
    assert set(config.temporality.values()) == {CUMULATIVE}
    assert isinstance(config.exporter(), OTLPMetricExporter)


def test_sdk_disabled_wins_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert export_config() is None
    assert export_notes() == [
        "telemetry: OTEL_METRICS_EXPORTER names otlp, but OTEL_SDK_DISABLED=true: "
        "no metrics are exported over OTLP"
    ]


@pytest.mark.parametrize(
    ("preference", "observable_counter", "histogram"),
    [
        ("delta", DELTA, DELTA),
        ("LowMemory", CUMULATIVE, DELTA),
        ("cumulative", CUMULATIVE, CUMULATIVE),
    ],
)
def test_temporality_follows_the_sdk_table(
    monkeypatch: pytest.MonkeyPatch,
    preference: str,
    observable_counter: AggregationTemporality,
    histogram: AggregationTemporality,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", preference)
    config = export_config()
    assert config is not None
    assert config.temporality[ObservableCounter] is observable_counter
    assert config.temporality[Histogram] is config.histogram_temporality is histogram
    assert config.temporality[ObservableGauge] is CUMULATIVE
    assert config.temporality[Counter] is (CUMULATIVE if preference == "cumulative" else DELTA)


def test_interval_and_timeout_are_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "250")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_TIMEOUT", "1500.5")
    config = export_config()
    assert config is not None
    assert (config.interval_seconds, config.timeout_seconds) == (0.25, 1.5005)


def test_grpc_uses_the_grpc_exporter_and_the_signal_variable_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc")
    config = export_config()
    assert config is not None and config.protocol == "grpc"
    assert config.exporter_class is GrpcMetricExporter


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "OTEL_METRICS_EXPORTER",
            "otlp,console",
            "settings: OTEL_METRICS_EXPORTER: must name otlp, prometheus or none, not console",
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "sometimes",
            "settings: OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: must be cumulative, delta or lowmemory",
        ),
        (
            "OTEL_METRIC_EXPORT_INTERVAL",
            "0",
            "settings: OTEL_METRIC_EXPORT_INTERVAL: must be a positive number of milliseconds, not '0'",
        ),
        (
            "OTEL_METRIC_EXPORT_TIMEOUT",
            "soon",
            "settings: OTEL_METRIC_EXPORT_TIMEOUT: must be a positive number of milliseconds, not 'soon'",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/json",
            "settings: OTEL_EXPORTER_OTLP_PROTOCOL: must be http/protobuf or grpc",
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "carrier-pigeon",
            "settings: OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: must be http/protobuf or grpc",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, line: str
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        export_config()
    assert str(raised.value) == line


def test_an_exponential_histogram_preference_is_noted_not_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
        "base2_exponential_bucket_histogram",
    )
    assert export_config() is not None
    (note,) = export_notes()
    assert "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION is not applied" in note
