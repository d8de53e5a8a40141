"""The exhausted set against a real prefork worker: what is kept, what is not, and what a record holds."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
import redis

from tests.support.failed import DEAD_LETTERS, records
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.scrape import samples_by_labels
from tests.support.tracing import traced_env
from tests.support.worker_process import WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration

FAST = {"QUEUE_POLL_INTERVAL": "0.3", "METRICS_RENDER_INTERVAL": "0"}


def finished(worker: WorkerProcess, task: str) -> dict[str, float]:
    samples = samples_by_labels(worker.metrics_url)["celery_task_finished_total"]
    return {
        dict(labels)["outcome"]: value
        for labels, value in samples.items()
        if dict(labels)["task"] == task and value
    }


def exhausted_count(worker: WorkerProcess, task: str) -> float:
    samples = samples_by_labels(worker.metrics_url)["celery_task_exhausted_total"]
    return samples[(("queue", "default"), ("task", task))]


def test_a_task_that_always_fails_is_kept_once_with_exception_traceback_and_run_span(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    receiver: OtlpReceiver,
) -> None:
    # Given a traced worker, and a task with autoretry_for=(ValueError,), max_retries=2
    # and its own default_retry_delay=0
    worker = start_worker({**traced_env(worker_env, receiver), **FAST})
    # When it is sent once and fails every attempt
    task_id = app.send_task("tests.always_fail", args=["s3cret-token"]).id
    found = wait_until(lambda: records(redis_client), 20, message="an exhausted record")
    # Then one record holds its exception, traceback, retries and the last run's span
    assert len(found) == 1
    record = found[0]
    assert (record.kind, record.reason, record.task, record.task_id, record.queue) == (
        "exhausted",
        "exhausted",
        "tests.always_fail",
        task_id,
        "default",
    )
    assert record.retries == 2 and record.exception == "ValueError"
    assert record.message == "always fails (12 chars)"
    assert record.traceback is not None
    assert record.traceback.rstrip().endswith("ValueError: always fails (12 chars)")
    assert 'raise ValueError(f"always fails' in record.traceback
    assert record.hostname == worker.hostname

    def last_run() -> list[ReceivedSpan]:
        return [
            span
            for span in receiver.named("run/tests.always_fail")
            if span.attributes.get("celery.task.retries") == 2
        ]

    run = wait_until(last_run, 20, message="the last attempt's run span")[0]
    assert (record.trace_id, record.span_id) == (run.trace_id, run.span_id)
    # And the message as the worker received it, enough to publish it again
    envelope = json.loads(record.raw)
    assert envelope["headers"]["id"] == task_id
    assert envelope["headers"]["task"] == "tests.always_fail"
    assert envelope["headers"]["retries"] == 2
    assert envelope["properties"]["delivery_info"]["routing_key"] == "default"
    assert envelope["content-type"] == "application/json"
    args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
    assert (args, kwargs) == (["s3cret-token"], {})
    # And the task's own retry delay held (Celery's default is capped, not forced on it)
    log = worker.log()
    assert log.count("Retry in 0s") == 2 and "Retry in 180s" not in log
    # And the worker counts it, primes the others at zero and polls the set's size
    assert exhausted_count(worker, "tests.always_fail") == 1
    assert exhausted_count(worker, "tests.fail_first_run") == 0
    wait_until(
        lambda: samples_by_labels(worker.metrics_url)["celery_exhausted_size"][()] == 1,
        10,
        message="celery_exhausted_size 1",
    )
    assert samples_by_labels(worker.metrics_url)["celery_exhausted_write_errors_total"][()] == 0


def test_only_final_failures_are_kept_and_an_acknowledged_hard_limit_is_one(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    # Given a worker
    worker = start_worker({**worker_env, **FAST})
    # When tasks end every other way: a failure then a success on the retry, explicit
    # retries, a Reject, a hard time limit whose message is requeued (acks_on_timeout
    # off) and runs again, and a hard time limit whose message is acknowledged
    app.send_task("tests.fail_then_succeed", args=["k"])
    app.send_task("tests.retry_twice", args=["k"])
    app.send_task("tests.reject_it")
    app.send_task("tests.hard_limit_requeued", args=["runs:requeued", 5])
    acked_id = app.send_task("tests.hard_limit_acked", args=[5]).id

    def all_done() -> bool:
        return (
            finished(worker, "tests.fail_then_succeed").get("succeeded") == 1
            and finished(worker, "tests.retry_twice").get("succeeded") == 1
            and finished(worker, "tests.reject_it") == {"failed": 1}
            and finished(worker, "tests.hard_limit_requeued") == {"requeued": 1, "succeeded": 1}
            and finished(worker, "tests.hard_limit_acked") == {"failed": 1}
        )

    wait_until(all_done, 30, interval=0.2, message="every task to end")
    # Then the exhausted set holds the acknowledged hard limit alone, written by the main process
    kept = wait_until(lambda: records(redis_client), 10, message="the hard limit's record")
    assert [(r.task, r.task_id, r.exception) for r in kept] == [
        ("tests.hard_limit_acked", acked_id, "TimeLimitExceeded")
    ]
    assert json.loads(kept[0].raw)["headers"]["id"] == acked_id
    # And the Reject stayed a dead letter
    assert [r.reason for r in records(redis_client, DEAD_LETTERS)] == ["bad_arguments"]
    # And only the hard limit is counted
    for task in ("fail_then_succeed", "retry_twice", "reject_it", "hard_limit_requeued"):
        assert exhausted_count(worker, f"tests.{task}") == 0
    assert exhausted_count(worker, "tests.hard_limit_acked") == 1
    assert int(redis_client.get("runs:requeued") or 0) == 2
