"""Settings: defaults, validation, and the one-line error at start."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import redis_url
from tests.support.worker_process import ROOT
from worker.celery_app import celery_config
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
        ("REDIS_URL", "redis://a:6379/0;redis://b:6379/0", "failover list of Redis servers"),
        ("CELERY_BROKER_URL", "redis://a:6379/0;redis://b:6379/0", "failover list"),
        ("CELERY_RESULT_BACKEND", "redis://a:6379/0;redis://b:6379/0", "failover list"),
        ("REDIS_URL", "sentinel://a:26379/0;redis://b:6379/0", "for sentinel:// URLs only"),
        ("REDIS_URL", "sentinel://a:26379/0;http://b:6379/0", "for sentinel:// URLs only"),
        ("BROKER_SENTINEL_MASTER", "jobpilot", "without a sentinel:// URL"),
        ("BROKER_SENTINEL_PASSWORD", "s3cret", "without a sentinel:// URL"),
        ("BROKER_SENTINEL_TLS", "true", "without a sentinel:// URL"),
        ("BROKER_SENTINEL_TLS", "sometimes", "valid boolean"),
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
        ("BROKER_SENTINEL_MASTER", "jobpilot"),
        # A sentinel:// URL without BROKER_SENTINEL_MASTER is refused naming the missing one
        ("BROKER_SENTINEL_MASTER", None),
    ],
)
def test_the_worker_exits_with_exactly_one_line(variable: str, value: str | None) -> None:
    # Given a bad variable, when the real worker command starts
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url()}
    if value is None:
        env["REDIS_URL"] = "sentinel://localhost:26379/13;sentinel://localhost:26380/13"
    else:
        env[variable] = value
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


def test_a_sentinel_list_needs_the_master_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given sentinel:// URLs and no master name
    monkeypatch.setenv("REDIS_URL", "sentinel://s1:26379/0;sentinel://s2:26379/0")
    # Then the missing variable is named
    with pytest.raises(SettingsError, match=r"^settings: BROKER_SENTINEL_MASTER: required"):
        load_settings()
    # And with it, the list is accepted as the broker and the result backend
    monkeypatch.setenv("BROKER_SENTINEL_MASTER", "jobpilot")
    settings = load_settings()
    assert settings.uses_sentinel
    assert settings.broker_url == settings.result_backend == os.environ["REDIS_URL"]


def test_sentinel_options_reach_the_broker_and_the_result_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a sentinel list with a master password, the sentinels' password, and TLS
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("a CA bundle\n")
    monkeypatch.setenv("REDIS_URL", "sentinel://:master-pw@s1:26379/2;sentinel://s2:26380/2")
    monkeypatch.setenv("BROKER_SENTINEL_MASTER", "jobpilot")
    monkeypatch.setenv("BROKER_SENTINEL_PASSWORD", "sentinel-pw")
    monkeypatch.setenv("BROKER_SENTINEL_TLS", "true")
    monkeypatch.setenv("REDIS_TLS_CA_FILE", str(ca_file))
    settings = load_settings()
    config = celery_config(settings)
    # Then kombu and the result backend get the master's name and the sentinels' own options
    verified = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca_file)}
    sentinel_kwargs = {"password": "sentinel-pw", "ssl": True, **verified}
    for options in (config["broker_transport_options"], config["result_backend_transport_options"]):
        assert options["master_name"] == "jobpilot"
        assert options["sentinel_kwargs"] == sentinel_kwargs
    # And the master is reached over verified TLS, with the URL's password
    assert config["broker_use_ssl"] == config["redis_backend_use_ssl"] == verified
    assert config["broker_url"] == os.environ["REDIS_URL"]
    # And the description shows neither password
    shown = repr(settings.describe())
    assert "master-pw" not in shown and "sentinel-pw" not in shown
    assert "sentinel://***@s1:26379/2;sentinel://s2:26380/2" in shown


def test_a_redis_result_backend_beside_a_sentinel_broker_gets_no_sentinel_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "sentinel://s1:26379/0")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://results:6379/1")
    monkeypatch.setenv("BROKER_SENTINEL_MASTER", "jobpilot")
    config = celery_config(load_settings())
    assert config["broker_transport_options"]["master_name"] == "jobpilot"
    assert "master_name" not in config["result_backend_transport_options"]
    assert "broker_use_ssl" not in config and "redis_backend_use_ssl" not in config


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
        "broker_sentinel_master",
        "broker_sentinel_password",
        "broker_sentinel_tls",
    }
    assert pinned <= set(Settings.model_fields)
