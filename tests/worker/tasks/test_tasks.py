"""Each domain task on a real worker: health, pub/sub, and one task per queue."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.conftest import redis_url
from tests.support.worker_process import ROOT, WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]) -> WorkerProcess:
    return start_worker(worker_env)


def test_health_check_round_trip(worker: WorkerProcess) -> None:
    sent = time.time()
    answer = app.send_task("health_check_task").get(timeout=15)
    assert answer["pid"] in worker.pool_pids()
    assert answer["hostname"].startswith(worker.name.split("@")[0] + "@")
    assert sent <= answer["time"] <= time.time()


def test_agent_events_reach_a_real_subscriber(
    worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    # Given a subscriber on the run's channel
    pubsub = redis_client.pubsub()
    pubsub.subscribe("jobpilot:agent-run:run-42")
    wait_until(lambda: pubsub.get_message(timeout=0.1), 5)  # the subscribe confirmation
    # When an event is published through the worker
    receivers = app.send_task(
        "publish_agent_event", args=["run-42", {"type": "hello"}], ignore_result=False
    )
    # Then it arrives as JSON on that channel
    message = wait_until(lambda: pubsub.get_message(timeout=0.1), 15)
    event = json.loads(message["data"])
    assert event["run_id"] == "run-42" and event["event"] == {"type": "hello"}
    assert receivers.id
    pubsub.close()


def test_an_agent_step_is_planned_and_announced(
    worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    pubsub = redis_client.pubsub()
    pubsub.subscribe("jobpilot:agent-run:run-7")
    wait_until(lambda: pubsub.get_message(timeout=0.1), 5)
    app.send_task("agent_plan_step", args=["run-7", 3, "write a report"])
    message = wait_until(lambda: pubsub.get_message(timeout=0.1), 15)
    assert json.loads(message["data"])["event"] == {
        "type": "step_planned",
        "step": 3,
        "subgoals": 4,
    }
    pubsub.close()


def test_each_queue_runs_its_task(worker: WorkerProcess) -> None:
    briefing = app.send_task(
        "briefing_compile",
        args=["ai", ["Models models train", "train models"]],
        ignore_result=False,
    )
    scrape = app.send_task("scrape_page", args=["https://example.org/a"], ignore_result=False)
    digest = briefing.get(timeout=15)
    page = scrape.get(timeout=15)
    assert digest["terms"][:2] == ["models", "train"]
    assert page["bytes"] > 0 and all(
        link.startswith("https://example.org/p/") for link in page["links"]
    )
    log = worker.log()
    assert f"briefing_compile[{briefing.id}] received" in log
    assert f"scrape_page[{scrape.id}] received" in log


def test_serialization_is_json_only() -> None:
    assert app.conf.accept_content == ["json"] and app.conf.result_accept_content == ["json"]
    assert app.conf.task_serializer == app.conf.result_serializer == "json"
    assert app.conf.event_serializer == "json"
    # And no module of the project touches pickle
    sources = [*Path(ROOT, "worker").rglob("*.py"), *Path(ROOT, "telemetry").rglob("*.py")]
    assert sources and not [
        p for p in sources if re.search(r"\bimport pickle|\bpickle\.", p.read_text())
    ]


def test_inspect_ping_answers(worker: WorkerProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "inspect", "ping", "-d", worker.hostname],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pong" in done.stdout and "1 node online" in done.stdout


def test_json_logs_carry_the_task_and_never_its_arguments(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    worker = start_worker({**worker_env, "LOG_FORMAT": "json"})
    secret = "s3cret-argument-value"
    app.send_task("briefing_compile", args=[secret, [secret]], ignore_result=False).get(timeout=15)
    app.send_task("briefing_compile", args=[secret], ignore_result=False)  # refused: bad_arguments
    worker.wait_for_log("dead-lettered message from briefings: bad_arguments", 15)
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    assert lines, "no JSON log lines"
    assert {"time", "level", "logger", "process", "message"} <= set(lines[0])
    assert any(
        line.get("task_name") == "briefing_compile" and line.get("task_id") for line in lines
    )
    assert secret not in "\n".join(json.dumps(line) for line in lines)
