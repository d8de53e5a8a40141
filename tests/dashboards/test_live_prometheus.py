"""A real Prometheus scrapes a real prefork worker, the broker exporter and beat with the project's rules loaded.

Every dashboard query and every recording rule is evaluated through the
Prometheus HTTP API, exemplars are stored, and stopping the worker raises
CeleryWorkerDown. Beat sends its fast test schedule (``tests.support.beat_app``)
the whole time, so every panel of the Beat row has data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.dashboards.artifacts import panel_queries, substitute_variables
from tests.dashboards.artifacts import rules as all_rules
from tests.support.beat_process import BeatProcess
from tests.support.broker_exporter import ExporterProcess
from tests.support.database import schema_command
from tests.support.failed import OpsClient, records
from tests.support.messages import item
from tests.support.prometheus import Prometheus, start_prometheus
from tests.support.scrape import samples_by_labels
from tests.support.worker_process import WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration

#: Panel queries allowed to return nothing under the test workload, with the reason.
EXPECTED_EMPTY: dict[str, str] = {}
OPS_TOKEN = "dashboards-operator-token"


@pytest.fixture
def scraped_worker(
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    start_exporter: Callable[..., ExporterProcess],
    start_beat: Callable[..., BeatProcess],
) -> Iterator[tuple[WorkerProcess, Prometheus]]:
    assert schema_command(worker_env["DATABASE_URL"]).returncode == 0
    env = {
        **worker_env,
        "READINESS_INTERVAL": "1",
        "QUEUE_POLL_INTERVAL": "1",
        # Spans are created (exemplars carry their trace ids) but not exported.
        "OTEL_TRACES_EXPORTER": "none",
    }
    # The broker state comes from the exporter alone, as in a fleet that runs one.
    worker = start_worker({**env, "QUEUE_POLL_ENABLED": "false"})
    beat = start_beat(env, wait=False)  # it starts while the exporter does
    exporter = start_exporter({**env, "OPS_TOKEN": OPS_TOKEN})
    beat.wait_serving()
    prometheus = start_prometheus(
        tmp_path,
        {
            "celery-worker": [f"127.0.0.1:{worker.env['METRICS_PORT']}"],
            "celery-broker-exporter": [exporter.target],
            "celery-beat": [beat.target],
        },
    )
    try:
        # Prometheus syncs new targets after about 5 s: the workload starts after its first scrape
        wait_until(
            lambda: prometheus.query('up{job="celery-worker"} == 1'), 30, interval=0.5, message="up"
        )
        run_mixed_workload(redis_client)
        done_at = requeue_the_failed(exporter, redis_client)
        # Two more scrapes after the workload, so every [1m] rate has points around it
        wait_until(
            lambda: prometheus.query(f'timestamp(up{{job="celery-worker"}}) > {done_at + 2}'),
            30,
            interval=0.5,
            message="scrapes after the workload",
        )
        yield worker, prometheus
    finally:
        prometheus.stop()
        exporter.stop()


def requeue_the_failed(exporter: ExporterProcess, redis_client: redis.Redis) -> float:
    """An operator requeues the failed tasks through the broker exporter; they fail again."""
    wait_until(lambda: len(records(redis_client)) == 3, 30, message="three exhausted records")
    ops = OpsClient(exporter.ops_port, OPS_TOKEN)
    selection = {"filter": {"task": "tests.fail"}, "dry_run": False}
    assert ops.post("/api/v1/failed/requeue", selection) == (
        200,
        {"matched": 3, "requeued": 3, "skipped": {}},
    )
    wait_until(lambda: len(records(redis_client)) == 3, 30, message="the reruns' records")
    return time.time()


def run_mixed_workload(redis_client: redis.Redis) -> float:
    """Every outcome the dashboards show: success, failure, retry, dead letter, nested publish."""
    results = [
        *(
            app.send_task("briefing_compile", args=["t", ["x"]], ignore_result=False)
            for _ in range(20)
        ),
        *(
            app.send_task("scrape_page", args=["https://example.org/", 0], ignore_result=False)
            for _ in range(5)
        ),
        app.send_task("example_task", args=["dashboards-1", {"n": 1}], ignore_result=False),
        app.send_task("agent_plan_step", args=["run-1", 1], ignore_result=False),
        app.send_task("tests.enqueue_child", ignore_result=False),
        app.send_task("tests.retry_twice", args=["k"], ignore_result=False),
    ]
    failed = [app.send_task("tests.fail", args=[1], ignore_result=False) for _ in range(3)]
    redis_client.lpush("default", item(body="not=base64=at=all", encode=False))
    for result in results:
        result.get(timeout=60)
    for result in failed:
        with pytest.raises(ValueError):
            result.get(timeout=60)
    return time.time()


def test_every_panel_query_and_recording_rule_evaluates_against_live_data(
    scraped_worker: tuple[WorkerProcess, Prometheus],
) -> None:
    worker, prometheus = scraped_worker
    # Given a worker that leaves the broker state to the exporter (QUEUE_POLL_ENABLED=false)
    assert samples_by_labels(worker.metrics_url)["celery_queue_depth"] == {}
    # And the workload's outcomes scraped
    wait_until(
        lambda: (
            prometheus.query('celery_messages_dead_lettered_total{reason="bad_envelope"} > 0')
            and prometheus.query('celery_task_finished_total{outcome="failed"} > 0')
            and prometheus.query('celery_task_finished_total{outcome="retried"} > 0')
            and prometheus.query("increase(celery_beat_entry_lateness_seconds_count[1m]) > 0")
        ),
        30,
        interval=0.5,
        message="the workload in Prometheus",
    )
    # Then every dashboard query evaluates, and every one the workload feeds has data
    empty = []
    queries = panel_queries()
    for dashboard, panel, expr in queries:
        result = prometheus.query(substitute_variables(expr))
        if not result:
            empty.append(f"{dashboard} / {panel}: {expr}")
    assert [line for line in empty if line.split(":")[0] not in EXPECTED_EMPTY] == [], empty
    print(f"{len(queries)} panel queries evaluated, {len(queries) - len(empty)} with data")

    # And every recording and alerting rule has evaluated with health ok
    def evaluated_rules() -> list[dict[str, Any]]:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        return rules if all(r.get("health") != "unknown" for r in rules) else []

    rules = wait_until(evaluated_rules, 20, interval=0.5, message="every rule evaluated")
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    assert len(rules) == len(list(all_rules()))
    # And the latency histograms carry trace-id exemplars into Prometheus's exemplar storage
    now = time.time()
    exemplars = prometheus.api(
        "query_exemplars",
        query='celery_task_runtime_seconds_bucket{task="briefing_compile"}',
        start=str(now - 300),
        end=str(now),
    )
    assert any(len(e["labels"]["trace_id"]) == 32 for s in exemplars for e in s["exemplars"])


def test_stopping_the_worker_raises_worker_down(
    scraped_worker: tuple[WorkerProcess, Prometheus],
) -> None:
    worker, prometheus = scraped_worker
    wait_until(lambda: prometheus.query('up{job="celery-worker"} == 1'), 20, message="up")
    assert not [
        a
        for a in prometheus.api("alerts")["alerts"]
        if a["labels"]["alertname"] == "CeleryWorkerDown"
    ]
    worker.stop()

    def worker_down() -> list[dict[str, Any]]:
        return [
            a
            for a in prometheus.api("alerts")["alerts"]
            if a["labels"]["alertname"] == "CeleryWorkerDown"
            and a["state"] in {"pending", "firing"}
        ]

    alerts = wait_until(worker_down, 20, interval=0.5, message="CeleryWorkerDown pending")
    assert alerts[0]["labels"]["severity"] == "critical"
