"""The database goes away while example_task runs: retried with backoff, shown, nothing leaked."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.database import psql, schema_command
from tests.support.endpoints import readyz
from tests.support.tcp_proxy import TcpProxy
from tests.support.worker_process import WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = [pytest.mark.integration, pytest.mark.faults]

TASKS = 10
OUTAGE_SECONDS = 5.0
PROBE_INTERVAL = 1.0


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    server = TcpProxy(5432).start()
    yield server
    server.stop()


def database_up(worker: WorkerProcess) -> bool | None:
    _, body = readyz(worker)
    up: bool | None = body["checks"].get("database", {}).get("up")
    return up


def connections() -> int:
    """Backends connected to the test database, other than this query's own."""
    return int(
        psql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'test' AND pid <> pg_backend_pid()"
        )
    )


def recorded() -> int:
    return int(psql("SELECT count(*) FROM example_records WHERE key LIKE 'db-fault-%'"))


def test_example_task_rides_out_a_database_outage(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    postgres_url: str,
    proxy: TcpProxy,
) -> None:
    assert schema_command(postgres_url).returncode == 0
    through_proxy = postgres_url.replace(":5432/", f":{proxy.port}/")
    worker = start_worker(
        {**worker_env, "DATABASE_URL": through_proxy, "READINESS_INTERVAL": str(PROBE_INTERVAL)}
    )
    wait_until(lambda: database_up(worker) is True, 15, interval=0.2, message="database check up")
    baseline = connections()
    # When the database becomes unreachable while tasks arrive
    proxy.cut()
    cut_at = time.monotonic()
    for n in range(TASKS):
        app.send_task("example_task", args=[f"db-fault-{n}", {"n": n}])
    # Then the database check shows the outage within two probe intervals
    wait_until(lambda: database_up(worker) is False, 10, interval=0.1, message="database down")
    assert time.monotonic() - cut_at <= 2 * PROBE_INTERVAL + 2.0
    assert worker.wait_for_log("Retry in", 15)
    # And once it is back, every task succeeds (retried with backoff), exactly one row per key
    wait_until(lambda: time.monotonic() - cut_at >= OUTAGE_SECONDS, 10, interval=0.1)
    proxy.restore()
    restored_at = time.monotonic()
    wait_until(lambda: recorded() == TASKS, 90, interval=0.2, message="every row written")
    recovered = time.monotonic() - restored_at
    wait_until(lambda: database_up(worker) is True, 10, interval=0.2, message="database check up")
    # And no connection leaked: back to the baseline once the tasks are done
    wait_until(lambda: connections() == baseline, 15, interval=0.2, message="connections back")
    print(f"database back: all {TASKS} tasks done {recovered:.1f} s later; connections {baseline}")
