"""Settings: defaults, validation, and the one-line error at start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.worker_process import ROOT
from worker.settings import Settings, SettingsError, load_settings


def test_defaults_work_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no configuration at all
    monkeypatch.delenv("REDIS_URL")
    # When the settings are loaded
    settings = load_settings()
    # Then they point at a local Redis and a local SQLite file
    assert settings.broker_url == "redis://localhost:6379/0"
    assert settings.result_backend == settings.broker_url
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert not settings.database_configured
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9464)
    assert settings.telemetry_enabled is True


def test_celery_urls_take_precedence_over_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://broker:6379/1")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://results:6379/2")
    settings = load_settings()
    assert settings.broker_url == "redis://broker:6379/1"
    assert settings.result_backend == "redis://results:6379/2"


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.metrics_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("METRICS_PORT", "99999", "less than or equal to 65535"),
        ("METRICS_PORT", "http", "valid integer"),
        ("READINESS_INTERVAL", "0", "greater than 0"),
        ("TELEMETRY_ENABLED", "maybe", "valid boolean"),
        ("LOG_FORMAT", "xml", "'text' or 'json'"),
        ("REDIS_URL", "amqp://guest@localhost//", "must start with"),
        ("DATABASE_URL", "postgresql://u:p@db/x", "must start with"),
        ("TASK_SOFT_TIME_LIMIT", "400", "below TASK_TIME_LIMIT"),
        ("BROKER_VISIBILITY_TIMEOUT", "100", "must exceed 1.1 x"),
        ("WORKER_MAX_TASKS_PER_CHILD", "-1", "greater than 0"),
        ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem", "no such file"),
        ("REDIS_URL", "redis://a:6379/0;redis://b:6379/0", "failover list is not supported"),
        ("CELERY_BROKER_URL", "redis://a:6379/0;redis://b:6379/0", "failover list"),
        ("CELERY_BROKER_READ_URL", "redis://replica:6379/0", "not supported"),
        ("CELERY_BROKER_WRITE_URL", "redis://primary:6379/0", "not supported"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(f"settings: {variable}: ")
    assert problem in str(caught.value)


def test_visibility_timeout_follows_shortened_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the short limits the crash tests use
    for name, value in {
        "BROKER_VISIBILITY_TIMEOUT": "10",
        "TASK_SOFT_TIME_LIMIT": "3",
        "TASK_TIME_LIMIT": "4",
        "MAX_RETRY_COUNTDOWN": "4",
    }.items():
        monkeypatch.setenv(name, value)
    # Then 10 > 1.1 * (4 + 4) is accepted
    assert load_settings().broker_visibility_timeout == 10


def test_credentials_never_appear_in_the_description(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://admin:hunter2@cache:6379/0")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app:s3cret@db/jobs")
    shown = repr(load_settings().describe())
    assert "hunter2" not in shown and "s3cret" not in shown
    assert "redis://***@cache:6379/0" in shown


def test_the_secret_is_not_echoed_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://admin:hunter2@cache")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("METRICS_PORT", "99999"),
        ("BROKER_VISIBILITY_TIMEOUT", "10"),
        ("LOG_LEVEL", "LOUD"),
        ("REDIS_URL", "redis://localhost:6379/13;redis://localhost:6380/13"),
        ("CELERY_BROKER_READ_URL", "redis://localhost:6379/13"),
    ],
)
def test_the_worker_exits_with_exactly_one_line(variable: str, value: str) -> None:
    # Given a bad variable, when the real worker command starts
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://localhost:6379/13", variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "default"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it exits non-zero with one line naming the variable, and nothing else
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"settings: {variable}: ")


def test_import_reads_no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a bad variable, importing the package still works: settings wait for configuration
    env = {"PATH": "/usr/bin:/bin", "METRICS_PORT": "not-a-port"}
    code = "import worker, sys; assert not worker.app.configured; print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_settings_type_has_every_pinned_variable() -> None:
    pinned = {
        "redis_url",
        "celery_broker_url",
        "celery_result_backend",
        "broker_key_prefix",
        "broker_visibility_timeout",
        "max_retry_countdown",
        "task_soft_time_limit",
        "task_time_limit",
        "worker_max_tasks_per_child",
        "worker_lost_retry_delay",
        "result_expires",
        "database_url",
        "log_level",
        "log_format",
        "metrics_host",
        "metrics_port",
        "readiness_interval",
        "telemetry_enabled",
        "max_message_bytes",
        "deadletter_max",
        "deadletter_max_bytes",
    }
    assert pinned <= set(Settings.model_fields)
