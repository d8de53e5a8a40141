"""At least once, made visible: the ETA trap, duplicates, hung tasks and unacked messages, on real workers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import redis

from tests.support.scrape import sample_sum, scrape
from tests.support.worker_process import SHORT_VISIBILITY, WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration

#: kombu's unacked hash: what workers hold, fleet-wide.
UNACKED = "unacked"
FAST_POLLS = {"QUEUE_POLL_INTERVAL": "0.2", "METRICS_RENDER_INTERVAL": "0.5"}


def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    return sample_sum(scrape(worker.metrics_url), name, **labels)


def test_a_countdown_past_the_visibility_timeout_runs_twice_and_is_counted_once(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    # Given two workers, a 9 s visibility timeout, a 6 s hard time limit and a restore sweep
    # every second
    env = {**worker_env, **SHORT_VISIBILITY, **FAST_POLLS}
    workers = [start_worker(env), start_worker(env)]
    runs = f"runs-{uuid.uuid4().hex}"
    # When a task is published with a countdown between 1x and 2x the visibility timeout
    # (and beyond 9 - 6 = 3 s, what the timeout allows with the hard limit)
    app.send_task("tests.count_run", args=[runs], countdown=12)

    def fleet(name: str) -> float:
        return sum(metric(worker, name, task="tests.count_run") for worker in workers)

    # Then the broker restores it while a worker holds it, and both copies run
    wait_until(lambda: redis_client.get(runs) == b"2", 40, interval=0.2, message="two runs")
    wait_until(
        lambda: fleet("celery_task_finished_total") == 2 and redis_client.hlen(UNACKED) == 0,
        15,
        interval=0.2,
        message="both copies finished and acknowledged",
    )
    assert redis_client.get(runs) == b"2"
    # And the first delivery is counted beyond the visibility timeout, the restored one as
    # redelivered, each once across the fleet
    assert fleet("celery_task_eta_beyond_visibility_total") == 1
    assert fleet("celery_task_redelivered_total") == 1
    assert fleet("celery_task_received_total") == 2
    logs = "".join(worker.log() for worker in workers)
    assert logs.count("task tests.count_run has an ETA") == 1
    assert "beyond what the visibility timeout (9 s) allows with a 6 s hard time limit" in logs


def test_duplicates_hung_tasks_eta_waiting_and_unacked_messages_on_one_worker(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    worker = start_worker({**worker_env, **FAST_POLLS})

    # Given a task held running for 4 s
    release = f"release-{uuid.uuid4().hex}"
    held = app.send_task("tests.hold", args=[release, 4.0], ignore_result=False)
    worker.wait_for_log(f"tests.hold[{held.id}] received", 15)
    wait_until(
        lambda: metric(worker, "celery_tasks_active", queue="default") == 1, 10, message="active"
    )
    started = time.monotonic()
    # Then, while it runs, the unacked gauge matches kombu's hash and its oldest age grows
    wait_until(
        lambda: metric(worker, "celery_broker_unacked_messages") == redis_client.hlen(UNACKED) == 1,
        5,
        message="the unacked gauge at kombu's count",
    )
    first_age = metric(worker, "celery_broker_oldest_unacked_age_seconds")
    wait_until(
        lambda: metric(worker, "celery_broker_oldest_unacked_age_seconds") >= first_age + 1,
        5,
        message="the oldest unacked age growing",
    )
    # And a scrape at 3 s or later reads an execution at least 2 s old
    wait_until(lambda: time.monotonic() - started >= 3, 5)
    assert metric(worker, "celery_tasks_oldest_running_seconds", queue="default") >= 2
    # And once it returns, the oldest running age is 0 within one render interval
    held.get(timeout=10)
    returned = time.monotonic()
    wait_until(
        lambda: metric(worker, "celery_tasks_oldest_running_seconds", queue="default") == 0,
        2,
        message="the oldest running age back to 0",
    )
    assert time.monotonic() - returned <= 0.5 + 1.0  # one render interval, plus a scrape
    wait_until(lambda: metric(worker, "celery_broker_unacked_messages") == 0, 5, message="acked")

    # Given the same task id published twice, and a task that retries three times
    twice = str(uuid.uuid4())
    for _ in range(2):
        app.send_task("tests.count_run", args=[f"dup-{twice}"], task_id=twice)
    retried = app.send_task("tests.retry_n", args=[3], ignore_result=False)
    assert retried.get(timeout=20) == 3
    wait_until(
        lambda: metric(worker, "celery_task_finished_total", task="tests.count_run") == 2,
        15,
        message="both copies finished",
    )
    # Then the second start of the same (id, retries) is one duplicate, and retries are none
    assert redis_client.get(f"dup-{twice}") == b"2"
    assert metric(worker, "celery_task_duplicate_executions_total", task="tests.count_run") == 1
    assert metric(worker, "celery_task_started_total", task="tests.retry_n") == 4
    assert metric(worker, "celery_task_duplicate_executions_total", task="tests.retry_n") == 0
    # And nothing here was redelivered or scheduled beyond the visibility timeout
    assert metric(worker, "celery_task_redelivered_total") == 0
    assert metric(worker, "celery_task_eta_beyond_visibility_total") == 0
    assert metric(worker, "celery_broker_visibility_timeout_seconds") == 3600

    # Given two tasks with a countdown, held by the worker until their ETA
    results = [
        app.send_task("tests.retry_n", args=[0], countdown=4, ignore_result=False) for _ in range(2)
    ]
    # Then both are waiting for their ETA: reserved, and in no queue's depth
    wait_until(
        lambda: metric(worker, "celery_tasks_eta_waiting", queue="default") == 2,
        5,
        message="two ETA tasks waiting",
    )
    assert metric(worker, "celery_tasks_reserved", queue="default") == 2
    # (the depth is polled: a poll between the publish and the fetch reads them queued, until
    # the next poll and render)
    wait_until(
        lambda: metric(worker, "celery_queue_depth", queue="default") == 0,
        1,
        message="no ETA task in the queue's depth",
    )
    # And once they ran, none is waiting
    for result in results:
        assert result.get(timeout=15) == 0
    wait_until(
        lambda: metric(worker, "celery_tasks_eta_waiting", queue="default") == 0,
        2,
        message="no ETA task waiting",
    )
