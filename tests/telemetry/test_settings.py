"""The telemetry's own settings: read once, one line per bad value, composed by the worker's."""

from __future__ import annotations

import pytest

from telemetry.settings import ConfigError, TelemetrySettings, read_settings
from worker.settings import Settings


def test_defaults_bind_loopback_and_turn_everything_on() -> None:
    settings = read_settings(TelemetrySettings)
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9464)
    assert settings.telemetry_enabled and settings.metrics_enabled
    assert not settings.trace_task_args


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("METRICS_PORT", "0", "greater than or equal to 1"),
        ("QUEUE_POLL_INTERVAL", "-1", "greater than 0"),
        ("READINESS_REQUIRED", "broker,disk", "unknown check(s) disk"),
        ("TRACE_TASK_ARGS", "perhaps", "valid boolean"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        read_settings(TelemetrySettings)
    assert str(caught.value).startswith(f"settings: {variable}: ")
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_the_worker_settings_keep_every_telemetry_variable() -> None:
    """The jobpilot worker composes the telemetry's settings: each variable is read by both."""
    assert set(TelemetrySettings.model_fields) <= set(Settings.model_fields)
