"""Poison messages against a real prefork worker: dead-lettered, logged once, never fatal."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest
import redis

from tests.conftest import redis_url
from tests.support.deadletters import health_round_trip, records, size
from tests.support.messages import deep_json, item, poison_items
from tests.support.worker_process import ROOT, WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration


def test_every_reason_is_dead_lettered_and_the_worker_keeps_serving(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    # Given a running worker
    worker = start_worker(worker_env)
    health_round_trip()
    # When one poison item of each kind is pushed raw into its queue, plus a deep array
    poison = poison_items()
    for raw in poison.values():
        redis_client.lpush("default", raw)
    redis_client.lpush("scraping", deep_json(100_000))
    # Then each lands in the dead-letter list with its reason, the raw item kept as text
    found = wait_until(
        lambda: len(records(redis_client)) >= len(poison) + 1 and records(redis_client), 20
    )
    by_reason = {r["reason"]: r for r in found}
    assert set(poison) <= set(by_reason)
    assert by_reason["bad_envelope"]["raw"] in {poison["bad_envelope"], deep_json(100_000)}
    assert by_reason["too_large"]["raw"] == "x" * 10_000_000
    assert by_reason["unknown_task"]["task"] == "no_such_task"
    assert by_reason["missing_header"]["task_id"] is None
    assert {r["queue"] for r in found} == {"default", "scraping"}
    # And consumer-layer records keep kombu's envelope
    assert json.loads(by_reason["bad_arguments"]["raw"])["headers"]["task"] == "briefing_compile"
    # And the worker still serves, with one log line per dead letter and no message body logged
    health_round_trip()
    log = worker.log()
    assert log.count("dead-lettered message from") == len(found)
    assert "only-topic" not in log and "definitely not json" not in log
    assert "reject requeue=False" not in log
    assert worker.process is not None and worker.process.poll() is None


def test_priority_and_prefixed_queues_are_validated(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    # Given a worker with a key prefix
    start_worker({**worker_env, "BROKER_KEY_PREFIX": "jp-test:"})
    # When garbage is pushed into a prefixed priority sub-list (kombu's `queue\x06\x163`)
    redis_client.lpush("jp-test:agents\x06\x163", b"garbage")
    # Then the record goes to the prefixed dead letters, naming the queue without suffix
    found = wait_until(lambda: records(redis_client, "jp-test:jobpilot:deadletter"), 15)
    assert found[0]["queue"] == "agents" and found[0]["reason"] == "not_json"


def test_the_cap_trims_the_oldest(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    start_worker({**worker_env, "DEADLETTER_MAX": "5"})
    for n in range(12):
        redis_client.lpush("default", f"garbage-{n:02d}")
    wait_until(lambda: redis_client.llen("default") == 0, 15)
    health_round_trip()
    raws = [r["raw"] for r in records(redis_client)]
    assert raws == [f"garbage-{n:02d}" for n in range(11, 6, -1)]


def failed_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url()}
    return subprocess.run(
        [sys.executable, "-m", "telemetry.failed", "-A", "worker", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_requeue_returns_a_valid_message_and_skips_an_invalid_one(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    # Given two dead letters: an unknown task (valid envelope) and non-JSON
    redis_client.lpush("default", b"not json")
    redis_client.lpush("briefings", item(task="briefing_compile", queue="briefings"))
    # (the briefing is dead-lettered by hand, as if its task had been unknown then)
    raw = redis_client.rpop("briefings")
    from telemetry.deadletters.records import Reason
    from telemetry.deadletters.writer import DeadLetterWriter

    DeadLetterWriter.for_app(app).write(
        "briefings", Reason.UNKNOWN_TASK, "briefing_compile", "x", raw
    )
    worker = start_worker(worker_env)
    wait_until(lambda: size(redis_client) == 2, 15)
    listing = failed_cli("list", "--kind", "dead_letter")
    assert "2 record(s) match" in listing.stdout and "unknown_task" in listing.stdout
    by_reason = {r["reason"]: r for r in records(redis_client)}
    # When the non-JSON record is requeued by id, it is skipped, and says why
    refused = failed_cli("requeue", by_reason["not_json"]["id"])
    assert refused.returncode == 0, refused.stderr
    assert json.loads(refused.stdout) == {
        "matched": 1,
        "requeued": 0,
        "skipped": {"invalid_message": 1},
    }
    # When the valid one is requeued, it runs
    record_id = by_reason["unknown_task"]["id"]
    shown = failed_cli("show", record_id)
    assert json.loads(shown.stdout)["queue"] == "briefings"
    done = failed_cli("requeue", record_id)
    assert json.loads(done.stdout)["requeued"] == 1, done.stderr
    requeued_id = json.loads(raw)["headers"]["id"]
    worker.wait_for_log(f"briefing_compile[{requeued_id}] succeeded", 15)
    assert size(redis_client) == 1
    # And a delete names what it deletes
    assert failed_cli("delete").returncode == 2
    assert json.loads(failed_cli("delete", "--all").stdout)["deleted"] == 1
    assert size(redis_client) == 0
