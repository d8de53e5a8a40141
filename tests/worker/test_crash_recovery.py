"""Crashes: a killed worker's task is redelivered; a lost pool process is retried, then dead-lettered."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable

import pytest
import redis

from tests.support.deadletters import records, size
from tests.support.scrape import sample_sum, scrape
from tests.support.worker_process import SHORT_VISIBILITY, WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration


def test_tasks_interrupted_by_sigkill_complete_after_restart_as_redeliveries(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    env = {**worker_env, **SHORT_VISIBILITY}
    from tests.worker.db.test_bridge import schema_command

    assert schema_command(env["DATABASE_URL"]).returncode == 0
    # Given a worker in the middle of two long tasks, one per pool process
    first = start_worker(env)
    results = [
        app.send_task("tests.sleep_then_record", args=[f"crash-{n}", 3.0], ignore_result=False)
        for n in range(2)
    ]
    for result in results:
        first.wait_for_log(f"tests.sleep_then_record[{result.id}] received", 15)
    time.sleep(0.5)  # let the pool processes pick them up: the kill must land mid-task
    held = redis_client.hlen("unacked")
    assert held == 2  # kombu's record of what this worker holds
    # When the whole worker is killed with SIGKILL
    killed_at = time.monotonic()
    first.kill()
    assert not any(f"sleep_then_record[{r.id}] succeeded" in first.log() for r in results)
    # And a new worker starts only after the visibility timeout has passed
    wait_until(lambda: time.monotonic() - killed_at > 9.5, 15)
    second = start_worker(env)
    # Then the tasks are redelivered and complete
    for result in results:
        assert isinstance(result.get(timeout=30), int)
        assert f"tests.sleep_then_record[{result.id}] received" in second.log()
    # And the new worker counts every task the killed one held as redelivered
    redelivered = sample_sum(
        scrape(second.metrics_url), "celery_task_redelivered_total", task="tests.sleep_then_record"
    )
    assert redelivered == held


def test_a_lost_pool_process_is_retried_then_dead_lettered(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    # Given a task that kills its own pool process every time, with max_retries=2
    worker = start_worker({**worker_env, "WORKER_LOST_RETRY_DELAY": "1"})
    sent = app.send_task("tests.kill_own_process", args=["lost-1"])
    # When it runs: the first execution and 2 retries are lost
    dead = wait_until(lambda: records(redis_client), 60)[0]
    # Then it is dead-lettered as worker_lost, once its retries are used up
    assert (dead["reason"], dead["task"], dead["task_id"]) == (
        "worker_lost",
        "tests.kill_own_process",
        sent.id,
    )
    assert json.loads(dead["raw"])["headers"]["retries"] == 2
    log = worker.wait_for_log("dead-lettered message from default: worker_lost", 10)
    received = [
        line for line in log.splitlines() if f"tests.kill_own_process[{sent.id}] received" in line
    ]
    assert len(received) == 3
    # And the last retry was scheduled WORKER_LOST_RETRY_DELAY ahead, and ran after it
    headers = json.loads(dead["raw"])["headers"]
    eta = datetime.datetime.fromisoformat(headers["eta"]).timestamp()
    assert dead["failed_at"] >= eta
    # And the counters agree with the record: two retries, one dead letter, three receipts
    text = scrape(worker.metrics_url)
    task = {"task": "tests.kill_own_process"}
    assert sample_sum(text, "celery_task_received_total", **task) == 3
    assert sample_sum(text, "celery_task_finished_total", outcome="retried", **task) == 2
    assert sample_sum(text, "celery_messages_dead_lettered_total", reason="worker_lost") == 1
    # And the worker keeps serving
    assert app.send_task("health_check_task").get(timeout=15)["pid"] in worker.pool_pids()
    assert size(redis_client) == 1
