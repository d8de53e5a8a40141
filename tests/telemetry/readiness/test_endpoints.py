"""/readyz, /livez, exemplars and the metrics port, against real worker processes."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from tests.support.endpoints import fetch, readyz
from tests.support.private_redis import PrivateRedis
from tests.support.worker_process import ROOT, WorkerProcess, free_port, wait_until
from worker.celery_app import app
from worker.command import worker_command

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_readyz_fails_within_two_intervals_when_the_broker_stops_and_recovers(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    private_redis: PrivateRedis,
) -> None:
    # Given a ready worker on a private Redis, probing every second
    worker = start_worker({**worker_env, "REDIS_URL": private_redis.url, "READINESS_INTERVAL": "1"})
    wait_until(lambda: readyz(worker)[0] == 200, 15, interval=0.2, message="ready")
    # When the broker stops
    private_redis.stop()
    stopped = time.monotonic()
    body = wait_until(
        lambda: (
            (r := readyz(worker))[0] == 503 and r[1]["checks"]["broker"]["up"] is False and r[1]
        ),
        10,
        interval=0.1,
        message="/readyz 503 with the broker check down",
    )
    # Then /readyz says so within two probe intervals (plus one probe timeout), naming the error
    assert time.monotonic() - stopped <= 2 * 1 + 0.66 + 0.5
    assert body["checks"]["broker"]["error"] == "ConnectionError"
    # And it recovers once the broker is back on the same port
    private_redis.start()
    wait_until(lambda: readyz(worker)[0] == 200, 60, interval=0.5, message="/readyz 200 again")


def test_a_saturated_pool_is_busy_not_unready(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    worker = start_worker(
        {**worker_env, "READINESS_INTERVAL": "1", "DATABASE_URL": worker_env["DATABASE_URL"]}
    )
    wait_until(lambda: readyz(worker)[0] == 200, 15, interval=0.2, message="ready")
    for _ in range(2):
        app.send_task("scrape_page", args=["https://example.org/", 2.0])
    status, body = wait_until(
        lambda: (r := readyz(worker))[1]["checks"]["health_task"]["busy"] and r,
        10,
        interval=0.1,
        message="busy",
    )
    assert status == 200 and body["checks"]["health_task"]["up"] is True


def test_livez_and_sigterm_turn_readyz_503_at_once(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    worker = start_worker({**worker_env, "READINESS_INTERVAL": "1"})
    wait_until(lambda: readyz(worker)[0] == 200, 15, interval=0.2, message="ready")
    assert fetch(worker, "/livez")[0] == 200
    # A running task keeps the worker in its warm shutdown for a while
    app.send_task("scrape_page", args=["https://example.org/", 2.0])
    worker.wait_for_log("scrape_page", 10)
    assert worker.process is not None
    worker.process.terminate()
    _, body = wait_until(
        lambda: (r := readyz(worker))[0] == 503 and r, 1.5, interval=0.05, message="503"
    )
    assert body["shutting_down"] is True


def test_exemplars_appear_only_in_openmetrics(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    worker = start_worker(worker_env)
    headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    app.send_task("briefing_compile", args=["t", ["x"]], headers=headers, ignore_result=False).get(
        timeout=15
    )
    # The result can be stored before the main process records the runtime, and a
    # render is cached for up to METRICS_RENDER_INTERVAL: poll rather than read once.

    def runtime_exemplars() -> list[str]:
        body = fetch(worker, "/metrics", accept="application/openmetrics-text; version=1.0.0")[
            1
        ].decode()
        return [
            line
            for line in body.splitlines()
            if line.startswith("celery_task_runtime_seconds_bucket")
            and f'# {{trace_id="{TRACE_ID}"}}' in line
        ]

    assert wait_until(runtime_exemplars, 10, interval=0.2, message="the runtime exemplar")
    assert TRACE_ID not in fetch(worker, "/metrics")[1].decode()


def test_a_taken_metrics_port_is_one_line_and_a_non_zero_exit(worker_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            worker_command(["default"], 1, "--without-mingle"),
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", **worker_env, "METRICS_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    ours = [
        line for line in (done.stdout + done.stderr).splitlines() if line.startswith("metrics:")
    ]
    assert ours == [f"metrics: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert "Traceback" not in done.stderr


def test_telemetry_disabled_serves_nothing(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    port = free_port()
    worker = start_worker({**worker_env, "TELEMETRY_ENABLED": "false", "METRICS_PORT": str(port)})
    assert app.send_task("health_check_task").get(timeout=15)["pid"] in worker.pool_pids()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
