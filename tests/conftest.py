"""Shared fixtures: a real Redis database and Postgres, flushed per test module."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import telemetry
from tests.support.beat_process import BeatProcess
from tests.support.broker_exporter import ExporterProcess
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.private_redis import PrivateRedis
from tests.support.process import LoggedProcess
from tests.support.worker_process import WorkerProcess
from worker.celery_app import app
from worker.settings import Settings

REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "localhost")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
#: The suite owns this Redis database and flushes it; it never touches db 0.
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "13"))
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)

#: Characters of each worker's log shown when a test fails.
WORKER_LOG_TAIL = 6000

#: Every variable the settings models read, plus every ``OTEL_*`` one the SDK reads.
OUR_VARIABLES = tuple(name.upper() for name in Settings.model_fields)


def redis_url(db: int = REDIS_DB) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


@pytest.fixture(autouse=True, scope="session")
def _a_plain_publisher() -> None:
    """``import worker`` installs the telemetry; the test process publishes without it, as a
    producer that never installed it would. Tests that need a producer with telemetry run one
    in a subprocess (``tests.support.tracing.publish_from_a_producer``)."""
    telemetry.uninstall(app)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees another's (or the developer's) configuration."""
    for name in OUR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REDIS_URL", redis_url())


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def postgres_url() -> str:
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-qc",
            "DROP TABLE IF EXISTS example_records",
        ],
        check=True,
        capture_output=True,
    )
    return POSTGRES_URL


@pytest.fixture
def worker_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a worker subprocess against the test Redis and a scratch SQLite."""
    return {
        "REDIS_URL": redis_url(),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/jobpilot.db",
        "LOG_LEVEL": "INFO",
    }


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@contextlib.contextmanager
def _stopped_afterwards(request: pytest.FixtureRequest) -> Iterator[list[LoggedProcess]]:
    """The processes a test starts: every one is stopped (or killed) afterwards, even when
    the test stops early, and a failed test shows the end of each one's log."""
    started: list[LoggedProcess] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop(timeout=10)
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            for process in started:
                code = process.process and process.process.returncode
                print(f"--- {process.what} {process.log_path.stem} exited {code}:")
                print(process.log()[-WORKER_LOG_TAIL:])


@pytest.fixture
def start_worker(
    log_dir: Path, redis_client: redis.Redis, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers for a test (``WorkerProcess`` arguments), stopped afterwards."""
    with _stopped_afterwards(request) as started:

        def start(env: dict[str, str], **kwargs: Any) -> WorkerProcess:
            worker = WorkerProcess(env, log_dir, **kwargs)
            started.append(worker)
            return worker.start()

        yield start


@pytest.fixture
def start_beat(
    log_dir: Path, redis_client: redis.Redis, request: pytest.FixtureRequest
) -> Iterator[Callable[..., BeatProcess]]:
    """Start ``celery beat`` processes for a test (``BeatProcess`` arguments), stopped afterwards."""
    with _stopped_afterwards(request) as started:

        def start(env: dict[str, str], *, wait: bool = True, **kwargs: Any) -> BeatProcess:
            beat = BeatProcess(env, log_dir, **kwargs)
            started.append(beat)
            return beat.start(wait=wait)

        yield start


@pytest.fixture
def start_exporter(
    log_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ExporterProcess]]:
    """Start broker exporters for a test, stopped afterwards (a failed start included)."""
    with _stopped_afterwards(request) as started:

        def start(env: dict[str, str], *args: str, app: str = "worker") -> ExporterProcess:
            exporter = ExporterProcess(env, log_dir, *args, app=app)
            started.append(exporter)
            return exporter.start()

        yield start


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own on a free port (AOF on), to stop, kill and restart."""
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A real OTLP/HTTP trace receiver on a free port."""
    server = OtlpReceiver().start()
    yield server
    server.stop()
