"""Generated garbage against a real prefork worker: every item is run or dead-lettered.

Each example pushes a batch of 25 items raw into the ``default`` queue list: bytes,
text, JSON documents, and real ``tests.own_headers`` envelopes with one field
replaced by a generated value or removed. Once the queue and ``unacked`` are
drained, the dead-letter records added plus the tasks that finished (not
counting refusals, which are dead-lettered too) must be exactly 25, and the
worker must still answer a health round trip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.deadletters import clear, size
from tests.support.messages import envelope
from tests.support.scrape import sample_sum, scrape
from tests.support.worker_process import WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = [pytest.mark.integration, pytest.mark.faults]

BATCH = 25
QUEUE = "default"
#: CI replays the same examples every run; ``GARBAGE_EXAMPLES=200`` explores more.
EXAMPLES = int(os.environ.get("GARBAGE_EXAMPLES", "6"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _sections(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        message,
        message["headers"],
        message["properties"],
        message["properties"]["delivery_info"],
    ]


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> bytes:
    """A valid ``tests.own_headers`` message with one field replaced or removed."""
    message = envelope(task="tests.own_headers", body=b"[[], {}, {}]")
    section = draw(st.sampled_from(_sections(message)))
    key = draw(st.sampled_from(sorted(section)))
    if draw(st.booleans()):
        del section[key]
    else:
        section[key] = draw(json_values)
    return json.dumps(message).encode()


garbage = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda value: json.dumps(value).encode()),
    mutated_envelopes(),
)


def deadletter_count(client: redis.Redis) -> int:
    return size(client)


def tasks_finished(worker: WorkerProcess) -> float:
    """Finished tasks, refusals excluded: a refused task is a dead letter already."""
    text = scrape(worker.metrics_url)
    return sample_sum(text, "celery_task_finished_total") - sample_sum(
        text, "celery_task_finished_total", outcome="rejected"
    )


def drained(client: redis.Redis) -> bool:
    return client.llen(QUEUE) == 0 and client.hlen("unacked") == 0


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]) -> WorkerProcess:
    started = start_worker(worker_env)
    assert app.send_task("health_check_task").get(timeout=15)["pid"] > 0
    return started


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="GARBAGE_EXAMPLES" not in os.environ,
    phases=[Phase.explicit, Phase.generate],  # a shrink re-runs batches on a real worker
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(garbage, min_size=BATCH, max_size=BATCH))
def test_every_generated_item_is_run_or_dead_lettered(
    batch: list[bytes], worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    # Given the counts before the batch
    wait_until(lambda: drained(redis_client), 20, message="an idle queue")
    clear(redis_client)  # below its record cap
    dead_before, finished_before = deadletter_count(redis_client), tasks_finished(worker)
    # When the batch is pushed raw into a queue the worker consumes
    redis_client.lpush(QUEUE, *batch)

    # Then each item either ran or was dead-lettered, exactly once
    def accounted() -> float:
        return (
            deadletter_count(redis_client) - dead_before + tasks_finished(worker) - finished_before
        )

    try:
        wait_until(lambda: drained(redis_client) and accounted() >= BATCH, 30, interval=0.1)
    except AssertionError:
        pytest.fail(
            f"{accounted()} of {BATCH} items accounted for; the worker log:\n{worker.log()[-3000:]}"
        )
    assert accounted() == BATCH
    # And the worker still serves
    assert worker.process is not None and worker.process.poll() is None
    assert app.send_task("health_check_task").get(timeout=15)["pid"] > 0
