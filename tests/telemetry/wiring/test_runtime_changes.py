"""add_consumer / cancel_consumer, pool_grow / pool_shrink and --autoscale, sent to a
real prefork worker, show in its /metrics and in what its depth poller reads."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.scrape import samples_by_labels
from tests.support.worker_process import WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration

FAST = {"QUEUE_POLL_INTERVAL": "0.3", "METRICS_RENDER_INTERVAL": "0"}


def queues_of(samples: dict, name: str) -> set[str]:  # type: ignore[type-arg]
    return {dict(labels)["queue"] for labels in samples.get(name, {})}


def test_consumers_added_and_cancelled_and_the_pool_resized_show_in_metrics(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
) -> None:
    # Given a worker that consumes `default` only, with two pool processes
    worker = start_worker({**worker_env, **FAST}, queues="default")
    target = [worker.hostname]

    def reads(predicate: Callable[[dict], bool], message: str) -> dict:  # type: ignore[type-arg]
        return wait_until(  # type: ignore[no-any-return]
            lambda: (s := samples_by_labels(worker.metrics_url)) and predicate(s) and s,
            15,
            interval=0.1,
            message=message,
        )

    samples = reads(lambda s: True, "metrics")
    assert queues_of(samples, "celery_worker_consumed_queue") == {"default"}
    assert samples["celery_worker_pool_processes"][()] == 2
    assert samples["celery_worker_pool_max_processes"][()] == 2
    assert "extra-q" not in queues_of(samples, "celery_queue_depth")
    # When it is told to consume `agents` and a queue the app does not declare
    for queue in ("agents", "extra-q"):
        assert app.control.add_consumer(queue, destination=target, reply=True, timeout=5)
    # Then `agents` gains its series, and the depth poller reads the new queue too (it is
    # empty: the worker consumes it, so anything pushed there is fetched at once)
    reads(
        lambda s: (
            queues_of(s, "celery_worker_consumed_queue") == {"default", "agents"}
            and s["celery_queue_depth"].get((("queue", "extra-q"),)) == 0
        ),
        "agents consumed and extra-q polled",
    )
    # When it stops consuming `default` and the undeclared queue
    for queue in ("default", "extra-q"):
        assert app.control.cancel_consumer(queue, destination=target, reply=True, timeout=5)
    # Then `default` loses its consumed series (its depth stays: it is declared), and the
    # undeclared queue is no longer polled
    samples = reads(
        lambda s: (
            queues_of(s, "celery_worker_consumed_queue") == {"agents"}
            and "extra-q" not in queues_of(s, "celery_queue_depth")
        ),
        "default cancelled and extra-q dropped",
    )
    assert "default" in queues_of(samples, "celery_queue_depth")
    # When the pool grows by two, then shrinks by one
    app.control.pool_grow(2, destination=target, reply=True, timeout=5)
    reads(lambda s: s["celery_worker_pool_processes"][()] == 4, "four pool processes")
    app.control.pool_shrink(1, destination=target, reply=True, timeout=5)
    samples = reads(lambda s: s["celery_worker_pool_processes"][()] == 3, "three pool processes")
    # Then without --autoscale the maximum is the pool size
    assert samples["celery_worker_pool_max_processes"][()] == 3


def test_autoscale_reports_its_maximum(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    worker = start_worker({**worker_env, **FAST}, extra_args=("--autoscale", "3,1"))
    samples = samples_by_labels(worker.metrics_url)
    assert samples["celery_worker_pool_max_processes"][()] == 3
    assert 1 <= samples["celery_worker_pool_processes"][()] <= 3
