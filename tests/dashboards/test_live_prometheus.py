"""A real Prometheus scrapes a real prefork worker with the project's rules loaded.

Every dashboard query and every recording rule is evaluated through the
Prometheus HTTP API, exemplars are stored, and stopping the worker raises
CeleryWorkerDown.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.dashboards.artifacts import panel_queries, rule_files, substitute_variables
from tests.dashboards.artifacts import rules as all_rules
from tests.dashboards.tools import binary
from tests.support.database import schema_command
from tests.support.messages import item
from tests.support.worker_process import WorkerProcess, free_port, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration

#: Panel queries allowed to return nothing under the test workload, with the reason.
EXPECTED_EMPTY: dict[str, str] = {}


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result


def start_prometheus(tmp_path: Path, target: str) -> Prometheus:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files()],
        "scrape_configs": [
            {"job_name": "celery-worker", "static_configs": [{"targets": [target]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    server = Prometheus(f"http://127.0.0.1:{port}", process)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            return False

    wait_until(ready, 30, interval=0.2, message="prometheus ready")
    return server


@pytest.fixture
def scraped_worker(
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> Iterator[tuple[WorkerProcess, Prometheus]]:
    assert schema_command(worker_env["DATABASE_URL"]).returncode == 0
    env = {
        **worker_env,
        "READINESS_INTERVAL": "1",
        "QUEUE_POLL_INTERVAL": "1",
        # Spans are created (exemplars carry their trace ids) but not exported.
        "OTEL_TRACES_EXPORTER": "none",
    }
    worker = start_worker(env)
    prometheus = start_prometheus(tmp_path, f"127.0.0.1:{worker.env['METRICS_PORT']}")
    try:
        # Prometheus syncs new targets after about 5 s: the workload starts after its first scrape
        wait_until(
            lambda: prometheus.query('up{job="celery-worker"} == 1'), 30, interval=0.5, message="up"
        )
        done_at = run_mixed_workload(redis_client)
        # Two more scrapes after the workload, so every [1m] rate has points around it
        wait_until(
            lambda: prometheus.query(f'timestamp(up{{job="celery-worker"}}) > {done_at + 2}'),
            30,
            interval=0.5,
            message="scrapes after the workload",
        )
        yield worker, prometheus
    finally:
        prometheus.process.terminate()
        prometheus.process.wait(10)


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
    _, prometheus = scraped_worker
    # Given the workload's outcomes scraped
    wait_until(
        lambda: (
            prometheus.query('celery_messages_dead_lettered_total{reason="bad_envelope"} > 0')
            and prometheus.query('celery_task_finished_total{outcome="failed"} > 0')
            and prometheus.query('celery_task_finished_total{outcome="retried"} > 0')
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
