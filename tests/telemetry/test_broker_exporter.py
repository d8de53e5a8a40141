"""The broker exporter on a real Redis, with no worker running: what it serves, what
it never serves, its probes through a dead broker, and its one-line refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from dashboards.config import KUBERNETES_DIR
from telemetry.deadletters.records import DEADLETTER_KEY
from tests.conftest import redis_url
from tests.support.broker_exporter import ExporterProcess
from tests.support.inventory_worker import APP as INVENTORY
from tests.support.messages import envelope
from tests.support.private_redis import PrivateRedis
from tests.support.process import ROOT
from tests.support.prometheus import Prometheus, start_prometheus
from tests.support.scrape import samples_by_labels
from tests.support.worker_process import wait_until
from tests.telemetry.metrics.test_queues import SEP, stamped

pytestmark = pytest.mark.integration

FAST = {"QUEUE_POLL_INTERVAL": "0.3", "READINESS_INTERVAL": "0.5", "METRICS_RENDER_INTERVAL": "0"}


def test_with_no_worker_it_serves_depth_age_dead_letters_and_unacked(
    redis_client: redis.Redis, start_exporter: Callable[..., ExporterProcess]
) -> None:
    # Given messages waiting on `agents` at two priorities, the oldest published 100 s
    # ago, two dead letters, and one message held unacked since 30 s ago
    now = time.time()
    redis_client.lpush("agents", stamped(now - 100, task="agent_plan_step", queue="agents"))
    redis_client.lpush(f"agents{SEP}6", stamped(now - 5, task="agent_plan_step", queue="agents"))
    # (two dead letters pushed as a worker from before the failed-work set did: drained)
    redis_client.lpush(DEADLETTER_KEY, "{}", "{}")
    redis_client.hset("unacked", "tag-1", json.dumps([envelope(), "", "default"]))
    redis_client.zadd("unacked_index", {"tag-1": now - 30})
    # When the exporter runs, with `extra` asked for besides the app's queues
    exporter = start_exporter(FAST, "-Q", "extra")
    try:
        url = exporter.url + "/metrics"

        def polled() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
            samples = samples_by_labels(url)
            return samples if samples["celery_queue_depth"].get((("queue", "agents"),)) else None

        samples = wait_until(polled, 15, interval=0.2, message="depth polled")
        # Then depth, age, dead letters and unacked are the broker's
        assert samples["celery_queue_depth"] == {
            (("queue", q),): (2 if q == "agents" else 0)
            for q in ("agents", "briefings", "scraping", "default", "extra")
        }
        assert (
            100 <= samples["celery_queue_oldest_message_age_seconds"][(("queue", "agents"),)] < 115
        )
        assert samples["celery_deadletter_size"][()] == 2
        assert samples["celery_broker_unacked_messages"][()] == 1
        assert 30 <= samples["celery_broker_oldest_unacked_age_seconds"][()] < 45
        assert samples["celery_broker_visibility_timeout_seconds"][()] == 3600
        assert samples["celery_broker_exporter_info"] == {(("version", "0.1.0"),): 1}
        # And it exports no worker or task series at all
        assert [n for n in samples if n.startswith(("celery_worker_", "celery_task_"))] == []
        # And its probes answer: the broker check passes, the poll loop turns
        wait_until(lambda: exporter.get("/readyz")[0] == 200, 10, message="/readyz 200")
        _, body = exporter.get("/readyz")
        assert json.loads(body)["checks"]["broker"]["up"] is True
        assert exporter.get("/livez")[0] == 200
        assert samples_by_labels(url)["celery_readiness_check_up"] == {(("check", "broker"),): 1}
    finally:
        assert exporter.stop() == 0, exporter.log()


def test_a_dead_broker_turns_readyz_503_keeps_the_last_values_and_recovers(
    tmp_path: Path, start_exporter: Callable[..., ExporterProcess]
) -> None:
    broker = PrivateRedis(tmp_path).start()
    client = redis.Redis(port=broker.port)
    client.lpush("default", stamped(time.time(), task="example_task"))
    exporter = start_exporter({**FAST, "REDIS_URL": broker.url})
    try:
        url = exporter.url + "/metrics"
        depth = (("queue", "default"),)
        wait_until(
            lambda: samples_by_labels(url)["celery_queue_depth"][depth] == 1, 15, message="depth"
        )
        wait_until(lambda: exporter.get("/readyz")[0] == 200, 10, message="ready")
        # When the broker dies
        broker.stop()
        wait_until(lambda: exporter.get("/readyz")[0] == 503, 10, message="/readyz 503")
        # Then the loop still turns, scrapes still answer, and the depth is the last one read
        assert exporter.get("/livez")[0] == 200
        samples = samples_by_labels(url)
        assert samples["celery_queue_depth"][depth] == 1
        assert samples["celery_readiness_check_up"][(("check", "broker"),)] == 0
        stale = samples["celery_queue_poll_last_success_timestamp_seconds"][()]
        assert "queue depth poll failed: ConnectionError" in exporter.log()
        assert broker.url not in exporter.log()
        # And when it is back, with an empty queue (AOF replays the message), it recovers
        broker.start()
        client.delete("default")
        wait_until(lambda: exporter.get("/readyz")[0] == 200, 15, message="ready again")
        wait_until(
            lambda: (
                (s := samples_by_labels(url))["celery_queue_depth"][depth] == 0
                and s["celery_queue_poll_last_success_timestamp_seconds"][()] > stale
            ),
            15,
            message="fresh depth",
        )
    finally:
        exporter.stop()
        broker.stop()


def test_any_celery_app_gets_its_own_queues(
    redis_client: redis.Redis, start_exporter: Callable[..., ExporterProcess]
) -> None:
    # Given the inventory app, which never imports worker
    redis_client.lpush("orders", stamped(time.time(), task="order_ship", queue="orders"))
    exporter = start_exporter({**FAST, "INVENTORY_BROKER_URL": redis_url()}, app=INVENTORY)
    try:
        samples = wait_until(
            lambda: (
                (s := samples_by_labels(exporter.url + "/metrics"))["celery_queue_depth"].get(
                    (("queue", "orders"),)
                )
                and s
            ),
            15,
            message="orders polled",
        )
        # Then it serves the inventory's queues and none of the jobpilot app's
        assert set(samples["celery_queue_depth"]) == {
            (("queue", q),) for q in ("orders", "invoices")
        }
    finally:
        exporter.stop()


@pytest.mark.parametrize(
    ("env", "args", "line"),
    [
        ({}, ["-A", "no_such_module"], "broker exporter: cannot load the app 'no_such_module'"),
        (
            {"INVENTORY_BROKER_URL": "amqp://guest:secret@127.0.0.1:5672//"},
            ["-A", INVENTORY],
            "broker exporter: the app's broker is not Redis",
        ),
        ({"BROKER_EXPORTER_PORT": "70000"}, ["-A", "worker"], "settings: BROKER_EXPORTER_PORT:"),
        ({"QUEUE_POLL_INTERVAL": "-1"}, ["-A", "worker"], "settings: QUEUE_POLL_INTERVAL:"),
        ({"OPS_PORT": "0"}, ["-A", "worker"], "settings: OPS_PORT:"),
        (
            {"OPS_TOKEN": "secret"},
            ["-A", "worker"],
            "settings: OPS_TOKEN: at least 16 characters",
        ),
        (
            {"OPS_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"},
            ["-A", "worker"],
            "settings: OPS_TRUSTED_PROXIES: 'proxy.local' is not an address or network",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    env: dict[str, str], args: list[str], line: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "telemetry.broker_exporter", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(line) and "secret" not in done.stderr


def rules(prometheus: Prometheus) -> list[dict[str, Any]]:
    return [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]


def test_zero_workers_work_waiting_in_a_real_prometheus(
    redis_client: redis.Redis, tmp_path: Path, start_exporter: Callable[..., ExporterProcess]
) -> None:
    # Given no worker, five messages waiting on `scraping`, and Prometheus scraping the exporter
    for _ in range(5):
        redis_client.lpush(
            "scraping", stamped(time.time() - 60, task="scrape_page", queue="scraping")
        )
    exporter = start_exporter(FAST)
    prometheus = start_prometheus(tmp_path, {"celery-broker-exporter": [exporter.target]})
    try:
        not_consumed = next(
            r["query"] for r in rules(prometheus) if r["name"] == "CeleryQueueNotConsumed"
        )
        # Then depth, age and demand are recorded from the exporter alone
        depth = wait_until(
            lambda: prometheus.query('queue:celery_queue_depth:max{queue="scraping"} == 5'),
            30,
            interval=0.5,
            message="depth recorded",
        )
        assert depth[0]["value"][1] == "5"
        demand = prometheus.query('queue:celery_capacity_demand:sum{queue="scraping"}')
        assert demand and demand[0]["value"][1] == "5"
        age = prometheus.query(
            'queue:celery_queue_oldest_message_age_seconds:max{queue="scraping"}'
        )
        assert float(age[0]["value"][1]) >= 60
        # And CeleryQueueNotConsumed's expression returns that queue, and only it
        result = prometheus.query(not_consumed)
        assert [r["metric"]["queue"] for r in result] == ["scraping"]
        # And the ScaledObject's queries ask for ceil(5 / 2) = 3 replicas, and none for ETA tasks
        triggers = yaml.safe_load((KUBERNETES_DIR / "scaledobject.yaml").read_text())["spec"][
            "triggers"
        ]
        queries = {t["name"]: t["metadata"]["query"] for t in triggers if t["type"] == "prometheus"}
        assert prometheus.query(queries["demand"])[0]["value"][1] == "5"
        assert prometheus.query(queries["eta-held"])[0]["value"][1] == "0"
        # And CeleryWorkerDown is pending: the default minWorkers is 1
        wait_until(lambda: prometheus.firing("CeleryWorkerDown"), 20, interval=0.5, message="down")
    finally:
        prometheus.stop()
        exporter.stop()
