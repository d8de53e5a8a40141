"""Queue depth and age, from the worker's own /metrics, on a real Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from telemetry.failed.records import Kind
from telemetry.metrics.catalogue import BrokerMetrics
from telemetry.metrics.queues import QueuePoller, priority_keys
from tests.support.failed import DEAD_LETTERS, store
from tests.support.messages import envelope
from tests.support.scrape import samples_by_labels
from tests.support.worker_process import WorkerProcess, wait_until

SEP = "\x06\x16"


def stamped(published_at: float, **kwargs: object) -> str:
    message = envelope(**kwargs)  # type: ignore[arg-type]
    message["headers"]["x-jobpilot-published-at"] = published_at
    return json.dumps(message)


def test_keys_follow_kombus_priority_naming() -> None:
    assert priority_keys("agents", {}) == [
        "agents",
        f"agents{SEP}3",
        f"agents{SEP}6",
        f"agents{SEP}9",
    ]
    assert priority_keys("a", {"global_keyprefix": "p:", "priority_steps": [0, 5]}) == [
        "p:a",
        f"p:a{SEP}5",
    ]


def test_one_round_trip_per_poll_whatever_the_queue_count(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each pipeline's commands, counted on the client: the server is shared by other clients.
    sent: list[int] = []
    pipeline = redis_client.pipeline

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        def counted(*execute_args: Any, **execute_kwargs: Any) -> Any:
            sent.append(len(pipe.command_stack))
            return execute(*execute_args, **execute_kwargs)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe

    monkeypatch.setattr(redis_client, "pipeline", counted_pipeline)
    for count in (4, 64):
        poller = QueuePoller(
            redis_client,
            [f"q{n}" for n in range(count)],
            {},
            {Kind.DEAD_LETTER: store(redis_client, DEAD_LETTERS)},
            BrokerMetrics(CollectorRegistry()),
        )
        poller.poll()  # the first poll loads the keep script into the server
        poller.round_trips, sent[:] = 0, []
        assert poller.poll()
        # One pipeline: 2 commands per sub-list, the unacked HLEN and ZRANGE, and the
        # dead letters' keep script
        assert poller.round_trips == 1 and sent == [count * 4 * 2 + 2 + 1]


@pytest.mark.integration
def test_depth_counts_priority_sub_lists_under_a_prefix_and_age_grows(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    # Given a worker with a key prefix that does not consume `scraping`
    worker = start_worker(
        {**worker_env, "BROKER_KEY_PREFIX": "jp:", "QUEUE_POLL_INTERVAL": "0.3"}, queues="default"
    )
    # When messages wait there at three priorities, the oldest published 100 s ago
    now = time.time()
    redis_client.lpush("jp:scraping", stamped(now - 100, task="scrape_page", queue="scraping"))
    redis_client.lpush(f"jp:scraping{SEP}3", stamped(now - 5, task="scrape_page", queue="scraping"))
    redis_client.lpush(
        f"jp:scraping{SEP}9", json.dumps(envelope(task="scrape_page", queue="scraping"))
    )

    def depth_and_age() -> tuple[float, float] | None:
        samples = samples_by_labels(worker.metrics_url)
        depth = samples["celery_queue_depth"][(("queue", "scraping"),)]
        age = samples["celery_queue_oldest_message_age_seconds"][(("queue", "scraping"),)]
        return (depth, age) if depth == 3 else None

    # Then the depth sums the sub-lists, and the age is the oldest stamped message's
    _, first_age = wait_until(depth_and_age, 15, interval=0.2, message="depth 3")
    assert 100 <= first_age < 115
    later = wait_until(
        lambda: (r := depth_and_age()) and r[1] > first_age + 0.5 and r,
        10,
        interval=0.2,
        message="age to grow",
    )
    assert later[0] == 3
    samples = samples_by_labels(worker.metrics_url)
    assert samples["celery_queue_depth"][(("queue", "default"),)] == 0
    assert samples["celery_queue_oldest_message_age_seconds"][(("queue", "default"),)] == 0
    assert samples["celery_queue_poll_last_success_timestamp_seconds"][()] >= now
