"""Secrets stay secret: task arguments and URL credentials appear on no surface.

Surfaces: the worker's log lines (text and JSON, at DEBUG so Celery's own
message lines are included), spans, ``/metrics`` (OpenMetrics, with exemplars),
the metrics sent over OTLP and ``/readyz``.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.private_redis import PrivateRedis
from tests.support.tracing import publish_from_a_producer, run_as_producer, traced_env
from tests.support.worker_process import ROOT, WorkerProcess

pytestmark = pytest.mark.integration

ARG_SECRET = "argument-secret-4f1c"
KWARG_SECRET = "kwarg-secret-93ab"
REDIS_PASSWORD = "redis-password-7d2e"
DB_PASSWORD = "db-password-c81f"
SECRETS = (ARG_SECRET, KWARG_SECRET, REDIS_PASSWORD, DB_PASSWORD)


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, None, "--requirepass", REDIS_PASSWORD).start(REDIS_PASSWORD)
    yield server
    server.stop()


def fetch(url: str, accept: str = "*/*") -> str:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:
        return str(error.read().decode())


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_reaches_logs_spans_metrics_or_readyz(
    log_format: str,
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    password_redis: PrivateRedis,
    receiver: OtlpReceiver,
) -> None:
    # Given credentials in both URLs and a worker logging everything
    env = {
        **traced_env(worker_env, receiver),
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{password_redis.port}/0",
        "DATABASE_URL": f"postgresql+asyncpg://postgres:{DB_PASSWORD}@127.0.0.1:5432/test",
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": log_format,
        "READINESS_INTERVAL": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }
    worker = start_worker(env)
    # When tasks carrying secrets in arguments succeed, fail and retry
    ok = publish_from_a_producer(env, "briefing_compile", [ARG_SECRET], {"sources": [KWARG_SECRET]})
    failed = publish_from_a_producer(env, "tests.fail", [ARG_SECRET])
    retried = publish_from_a_producer(env, "tests.retry_twice", [ARG_SECRET])
    for task_id, name in ((ok, "briefing_compile"), (failed, "tests.fail")):
        receiver.wait_for(f"run/{name}", message_id=task_id)
    receiver.wait_for("run/tests.retry_twice", message_id=retried)
    readyz = fetch(worker.metrics_url.replace("/metrics", "/readyz"))
    assert '"database"' in readyz  # the database check ran with the password in its URL
    metrics = fetch(worker.metrics_url, "application/openmetrics-text")
    assert 'task="briefing_compile"' in metrics
    receiver.wait_for_metric("celery.task.finished", **{"celery.task.name": "tests.fail"})
    # Then no secret is anywhere
    surfaces = {
        "log": worker.log(),
        "spans": repr([(s.name, s.attributes, s.events, s.resource) for s in receiver.spans]),
        "metrics": metrics,
        "otlp metrics": repr([(p.metric, p.attributes, p.resource) for p in receiver.points]),
        "readyz": readyz,
    }
    leaks = [
        (name, secret) for name, text in surfaces.items() for secret in SECRETS if secret in text
    ]
    assert leaks == []
    # And the log did record the tasks (the test looked at real lines)
    assert ok in surfaces["log"] and failed in surfaces["log"]


def test_a_producer_without_telemetry_cannot_leak_arguments_into_worker_lines(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    # Given a worker, and a publisher of its own that never installed the telemetry, so
    # its messages carry Celery's real argsrepr
    worker = start_worker({**worker_env, "LOG_LEVEL": "DEBUG"})
    sent_id = run_as_producer(
        {"REDIS_URL": worker_env["REDIS_URL"]},
        "import os\n"
        "from celery import Celery\n"
        "plain = Celery(broker=os.environ['REDIS_URL'])\n"
        f"print(plain.send_task('tests.sleep_then_record', args=[{ARG_SECRET!r}, 3.0], "
        "queue='default').id)\n",
    )
    worker.wait_for_log(f"tests.sleep_then_record[{sent_id}] received", 15)
    # When Celery prints the request (inspect active, and its own request lines)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "inspect",
            "active",
            "-d",
            worker.hostname,
            "--json",
        ],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": worker_env["REDIS_URL"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then the arguments are replaced by their count
    assert done.returncode == 0, done.stderr
    assert sent_id in done.stdout and "<2 args>" in done.stdout
    assert ARG_SECRET not in done.stdout and ARG_SECRET not in worker.log()
