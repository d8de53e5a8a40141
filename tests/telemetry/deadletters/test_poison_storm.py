"""A poison storm past DEADLETTER_MAX: the cap holds, memory stays bounded, the alert has data."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from tests.support.deadletters import health_round_trip, records, size
from tests.support.scrape import sample_sum, scrape
from tests.support.worker_process import WorkerProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

STORM = 5000
CAP = 100
ITEM_BYTES = 1024


def dead_lettered_total(worker: WorkerProcess) -> float:
    return sample_sum(
        scrape(worker.metrics_url), "celery_messages_dead_lettered_total", reason="not_json"
    )


def test_a_poison_storm_is_capped_and_counted(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    worker = start_worker({**worker_env, "DEADLETTER_MAX": str(CAP)})
    used_before = int(redis_client.info("memory")["used_memory"])
    # When thousands of unparseable items arrive, in batches as a broken producer would send them
    for batch in range(STORM // 500):
        redis_client.lpush(
            "default", *(f"{batch:03d}-{n:04d}-".ljust(ITEM_BYTES, "x") for n in range(500))
        )
    wait_until(
        lambda: redis_client.llen("default") == 0, 120, interval=0.2, message="storm drained"
    )
    health_round_trip(30)
    # Then the set holds exactly the cap, the newest
    assert size(redis_client) == CAP
    assert records(redis_client)[0]["raw"].startswith(f"{STORM // 500 - 1:03d}-0499-")
    # And Redis memory grew by about the capped records, not the storm
    grown = int(redis_client.info("memory")["used_memory"]) - used_before
    assert grown < 2 * CAP * ITEM_BYTES + 1_000_000, grown
    # And every dead letter is counted, which is what CeleryDeadLettersGrowing reads
    assert wait_until(lambda: dead_lettered_total(worker) == STORM, 15, interval=0.3)
    # And the worker is still serving
    assert worker.process is not None and worker.process.poll() is None
