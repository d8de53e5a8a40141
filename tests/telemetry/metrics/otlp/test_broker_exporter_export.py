"""The broker exporter sends depth and age over OTLP, as it serves them; a bad variable stops it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import redis

from tests.support.broker_exporter import ExporterProcess
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.process import ROOT
from tests.support.scrape import samples_by_labels
from tests.support.worker_process import wait_until
from tests.telemetry.metrics.test_queues import stamped

pytestmark = pytest.mark.integration

QUEUES = {"agents", "briefings", "scraping", "default"}


def test_depth_and_age_over_otlp_are_the_served_values(
    redis_client: redis.Redis,
    start_exporter: Callable[..., ExporterProcess],
    receiver: OtlpReceiver,
) -> None:
    # Given three messages waiting on `agents`, the oldest published 100 s ago
    now = time.time()
    for age in (100, 50, 1):
        redis_client.lpush("agents", stamped(now - age, task="agent_plan_step", queue="agents"))
    # When the broker exporter runs with OTLP metrics on
    exporter = start_exporter(
        {
            "QUEUE_POLL_INTERVAL": "0.3",
            "METRICS_RENDER_INTERVAL": "0",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        }
    )

    def sent() -> dict[str, float] | None:
        latest = receiver.latest("celery.queue.depth")
        depth = {p.attributes["messaging.destination.name"]: p.value for p in latest.values()}
        return depth if depth.get("agents") == 3 else None

    # Then depth per queue is what /metrics serves, and the age is the oldest message's
    depth = wait_until(sent, 15, interval=0.1, message="depth over OTLP")
    served = samples_by_labels(exporter.url + "/metrics")
    assert depth == {dict(k)["queue"]: v for k, v in served["celery_queue_depth"].items()}
    assert set(depth) == QUEUES
    ages = {
        p.attributes["messaging.destination.name"]: p.value
        for p in receiver.latest("celery.queue.oldest_message.age").values()
    }
    assert 100 <= ages["agents"] < 115
    assert {p.attributes["messaging.system"] for p in receiver.points} == {"redis"}
    # And no worker or task metric comes from it
    assert {p.metric for p in receiver.points} == {
        "celery.queue.depth",
        "celery.queue.oldest_message.age",
    }
    assert exporter.stop() == 0, exporter.log()
    assert "exporting metrics over OTLP (http/protobuf) every 0.2 s" in exporter.log()


def test_a_bad_metric_variable_is_one_line_and_status_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "telemetry.broker_exporter", "-A", "worker"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_METRIC_EXPORT_INTERVAL": "often",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "settings: OTEL_METRIC_EXPORT_INTERVAL: must be a positive number of milliseconds, "
        "not 'often'"
    ]
