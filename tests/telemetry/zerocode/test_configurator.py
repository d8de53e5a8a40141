"""The configurator: when it is selected, which exporters a missing grpc exporter turns off,
and that unselected it configures the SDK as the distro's configurator does."""

from __future__ import annotations

import os
from typing import Any

import pytest

from telemetry.zerocode import configurator
from telemetry.zerocode.configurator import (
    TelemetryConfigurator,
    selected,
    turn_off_grpc_without_exporter,
)

#: What opentelemetry-distro sets when nothing else does.
DISTRO_DEFAULTS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
}
LINE = (
    "telemetry: OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the grpc exporter, which is not "
    "installed: pip install 'jobpilot-telemetry[grpc]', or set "
    "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf; span and metric export are off"
)


@pytest.fixture
def no_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(configurator, "grpc_exporter_installed", lambda: False)


@pytest.mark.parametrize(
    ("environ", "chosen"),
    [
        ({}, False),
        ({"OTEL_PYTHON_CONFIGURATOR": "configurator"}, False),
        ({"OTEL_PYTHON_CONFIGURATOR": "jobpilot_telemetry"}, True),
        ({"OTEL_PYTHON_CONFIGURATOR": " jobpilot_telemetry "}, True),
        (
            {
                "OTEL_PYTHON_CONFIGURATOR": "jobpilot_telemetry",
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "redis, jobpilot_telemetry",
            },
            False,
        ),
        (
            {
                "OTEL_PYTHON_CONFIGURATOR": "jobpilot_telemetry",
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*",
            },
            False,
        ),
    ],
)
def test_selected_by_the_variable_unless_the_instrumentor_is_disabled(
    environ: dict[str, str], chosen: bool
) -> None:
    assert selected(environ) is chosen


def test_the_distros_grpc_default_without_the_exporter_turns_both_off_in_one_line(
    no_grpc: None, caplog: pytest.LogCaptureFixture
) -> None:
    environ = dict(DISTRO_DEFAULTS)
    assert turn_off_grpc_without_exporter(environ) == [
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
    ]
    assert environ == {**DISTRO_DEFAULTS, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}  # fmt: skip
    assert [record.getMessage() for record in caplog.records] == [LINE]


def test_a_signals_own_protocol_wins(no_grpc: None, caplog: pytest.LogCaptureFixture) -> None:
    environ = {**DISTRO_DEFAULTS, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert turn_off_grpc_without_exporter(environ) == ["OTEL_METRICS_EXPORTER"]
    assert environ["OTEL_TRACES_EXPORTER"] == "otlp"
    assert caplog.records[0].getMessage().endswith("; metric export is off")


@pytest.mark.parametrize(
    "environ",
    [
        {},  # the telemetry's default protocol is http/protobuf
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_nothing_needs_grpc_nothing_changes(no_grpc: None, environ: dict[str, str]) -> None:
    before = dict(environ)
    assert turn_off_grpc_without_exporter(environ) == []
    assert environ == before


def test_with_the_exporter_installed_grpc_stays() -> None:
    environ = dict(DISTRO_DEFAULTS)
    assert configurator.grpc_exporter_installed()  # the grpc extra is in the lock
    assert turn_off_grpc_without_exporter(environ) == []
    assert environ == DISTRO_DEFAULTS


def test_unselected_it_configures_the_sdk_selected_it_sets_up_nothing(
    monkeypatch: pytest.MonkeyPatch, no_grpc: None
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "opentelemetry.sdk._configuration._initialize_components",
        lambda **kwargs: calls.append(kwargs),
    )
    TelemetryConfigurator().configure(auto_instrumentation_version="0")
    assert calls == [{"auto_instrumentation_version": "0"}]
    monkeypatch.setenv("OTEL_PYTHON_CONFIGURATOR", "jobpilot_telemetry")
    for name, value in DISTRO_DEFAULTS.items():
        monkeypatch.setenv(name, value)
    TelemetryConfigurator().configure(auto_instrumentation_version="0")
    assert len(calls) == 1
    assert os.environ["OTEL_TRACES_EXPORTER"] == "none"
