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
        ("BROKER_HEALTH_CHECK_INTERVAL", "0", "0 turns off kombu's checks"),
        ("BROKER_KEEPALIVE_COUNT", "200", "less than or equal to 127"),
        ("BROKER_SOCKET_TIMEOUT", "0", "greater than 0"),
        ("BROKER_SOCKET_TIMEOUT", "30", "must stay below LIVENESS_TIMEOUT (60s)"),
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


def test_a_socket_timeout_is_judged_against_the_liveness_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ack that times out is retried once on a fresh connection: the event loop may
    wait 2 x BROKER_SOCKET_TIMEOUT + BROKER_CONNECT_TIMEOUT, which /livez must allow."""
    monkeypatch.setenv("BROKER_SOCKET_TIMEOUT", "20")
    monkeypatch.setenv("BROKER_CONNECT_TIMEOUT", "5")
    monkeypatch.setenv("LIVENESS_TIMEOUT", "46")
    assert read_settings(TelemetrySettings).broker_socket_timeout == 20
    monkeypatch.setenv("LIVENESS_TIMEOUT", "45")
    with pytest.raises(ConfigError, match=r"\(45s\): one blocked command"):
        read_settings(TelemetrySettings)
