"""A requeue cut by a broker crash: every record is kept or requeued, never both, never neither."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from telemetry.failed.records import EXHAUSTED_REASON, FailedRecord, Kind
from tests.support.failed import records, store
from tests.support.messages import item
from tests.support.private_redis import PrivateRedis
from tests.support.worker_process import ROOT, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

RECORDS = 1000
QUEUE = "default"


def test_a_broker_killed_mid_requeue_keeps_every_record_exactly_once(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    # Given 1,000 exhausted records on an AOF-backed Redis, and no worker consuming
    client = redis.Redis(port=private_redis.port)
    kept = store(client)
    for n in range(RECORDS):
        task_id = str(uuid.uuid4())
        kept.write(
            FailedRecord.new(
                Kind.EXHAUSTED,
                queue=QUEUE,
                task="tests.count_run",
                task_id=task_id,
                reason=EXHAUSTED_REASON,
                raw=item(task="tests.count_run", task_id=task_id, queue=QUEUE),
                failed_at=1_000_000.0 + n,
            )
        )
    assert kept.size() == RECORDS
    # When a requeue of all of them runs and the Redis is SIGKILLed while it does
    requeue = subprocess.Popen(
        [sys.executable, "-m", "telemetry.failed", "-A", "worker", "requeue", "--all"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": private_redis.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: client.llen(QUEUE) > 0, 30, interval=0.0005, message="the first requeue")
        assert private_redis.process is not None
        os.kill(private_redis.process.pid, signal.SIGKILL)
        private_redis.process.wait(10)
    finally:
        requeue.wait(30)
    assert requeue.returncode != 0  # it lost its broker mid-way
    # Then after a restart, the set and the queue hold the 1,000 between them
    restarted = PrivateRedis(tmp_path, private_redis.port).start()
    private_redis.process = restarted.process
    client = redis.Redis(port=private_redis.port)
    queued = [item for key in client.keys(f"{QUEUE}*") for item in client.lrange(key, 0, -1)]
    left = records(client)
    assert 0 < len(queued) < RECORDS, f"the crash did not cut the requeue ({len(queued)})"
    assert len(queued) + len(left) == RECORDS
    # And no task id is in both
    requeued_ids = {json.loads(raw)["headers"]["id"] for raw in queued}
    assert requeued_ids.isdisjoint({record.task_id for record in left})
    assert len(requeued_ids) == len(queued)
