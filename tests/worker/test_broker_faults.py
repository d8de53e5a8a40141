"""Broker faults on a private, AOF-persisted redis-server: the worker reconnects, nothing is lost.

For each fault (CLIENT KILL, SHUTDOWN for 10 s, SIGKILL), every task whose
publish returned before the fault completes at least once afterwards, the one a
fetch had moved as the broker died included (reliable fetch: it is in an
in-flight list, swept back once its deadline passes); the same worker process
serves on, and readiness tells the truth throughout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable

import pytest
import redis

from tests.support.database import schema_command
from tests.support.endpoints import readyz
from tests.support.private_redis import PrivateRedis
from tests.support.worker_process import SHORT_VISIBILITY, WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = [pytest.mark.integration, pytest.mark.faults]

TASKS = 40
PROBE_INTERVAL = 1.0


def readiness(worker: WorkerProcess) -> tuple[int, bool | None]:
    """(/readyz status, the broker check's state)."""
    status, body = readyz(worker)
    return status, body["checks"].get("broker", {}).get("up")


def completed(database: str) -> int:
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute(
            "SELECT count(DISTINCT key) FROM example_records WHERE key LIKE 'fault-%'"
        ).fetchone()
    return int(count)


def publish_batch(broker: PrivateRedis) -> None:
    """Publish TASKS quick tasks to the private broker; returns once every publish returned."""
    with app.connection_for_write(broker.url) as connection:
        for n in range(TASKS):
            app.send_task(
                "tests.sleep_then_record", args=[f"fault-{n:03d}", 0.1], connection=connection
            )


def client_kill(broker: PrivateRedis) -> None:
    client = redis.Redis(port=broker.port)
    client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


def shutdown(broker: PrivateRedis) -> None:
    with contextlib.suppress(redis.ConnectionError):
        redis.Redis(port=broker.port).shutdown()  # fsyncs the AOF first
    assert broker.process is not None
    broker.process.wait(10)


def sigkill(broker: PrivateRedis) -> None:
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGKILL)
    broker.process.wait(10)


#: fault -> (how it breaks, seconds the broker stays down; None: it stays up)
FAULTS: dict[str, tuple[Callable[[PrivateRedis], None], float | None]] = {
    "client_kill": (client_kill, None),
    "shutdown": (shutdown, 10.0),
    "sigkill": (sigkill, 3.0),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_the_worker_recovers_from_a_broker_fault_without_losing_tasks(
    fault: str,
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    private_redis: PrivateRedis,
) -> None:
    broker = private_redis
    database = worker_env["DATABASE_URL"].split("///", 1)[1]
    assert schema_command(worker_env["DATABASE_URL"]).returncode == 0
    env = {
        **worker_env,
        **SHORT_VISIBILITY,
        "REDIS_URL": broker.url,
        "READINESS_INTERVAL": str(PROBE_INTERVAL),
        # An in-flight list left by the broker's death is swept 3 intervals on.
        "BROKER_HEALTH_CHECK_INTERVAL": "2",
    }
    worker = start_worker(env)
    main_pid = worker.pid
    wait_until(lambda: readiness(worker)[0] == 200, 15, interval=0.2, message="ready")
    # Given a batch whose every publish returned
    publish_batch(broker)
    wait_until(lambda: completed(database) >= 3, 15, interval=0.05, message="draining")
    # When the fault hits mid-drain
    breaks, down_for = FAULTS[fault]
    faulted_at = time.monotonic()
    breaks(broker)
    if down_for is not None:
        # Then readiness fails within two probe intervals (plus a probe timeout) of the broker's exit
        gone_at = time.monotonic()
        wait_until(lambda: readiness(worker)[1] is False, 10, interval=0.1, message="broker down")
        noticed = time.monotonic() - gone_at
        assert noticed <= 2 * PROBE_INTERVAL + 1.0, noticed
        assert readiness(worker)[0] == 503
        time.sleep(max(0.0, down_for - noticed))  # the rest of the outage
        broker.start()
    else:
        noticed = None
    # Then every task completes at least once, served by the same worker process
    wait_until(
        lambda: completed(database) == TASKS,
        45,  # the visibility timeout (9 s) plus a restore pass and the drain, with room
        interval=0.2,
        message=f"all {TASKS} tasks after {fault}",
    )
    recovered = time.monotonic() - faulted_at
    assert worker.pid == main_pid and worker.process is not None and worker.process.poll() is None
    # And readiness recovers
    wait_until(lambda: readiness(worker) == (200, True), 30, interval=0.2, message="ready again")
    ready_again = time.monotonic() - faulted_at
    print(
        f"{fault}: outage noticed after {noticed}, ready again after {ready_again:.1f} s, "
        f"all {TASKS} tasks done {recovered:.1f} s after the fault"
    )
