"""A prefork worker with recycling exports over OTLP what /metrics counts, under the pinned names."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from telemetry.metrics.catalogue import RUNTIME_BUCKETS
from tests.conftest import redis_url
from tests.support.otlp_receiver import OtlpReceiver, ReceivedPoint
from tests.support.scrape import samples_by_labels
from tests.support.worker_process import WorkerProcess, wait_until
from tests.support.workload import MIXED_DELIVERIES, send_mixed_workload
from worker.celery_app import app

pytestmark = pytest.mark.integration

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]
QUEUES = ("agents", "briefings", "scraping", "default")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OtlpReceiver, Samples]]:
    """One worker (prefork, concurrency 2, a new pool process every 3 tasks) exporting every
    200 ms to a real receiver, after the workload; the receiver and the final /metrics."""
    patch = pytest.MonkeyPatch()
    patch.setenv("REDIS_URL", redis_url())  # this process publishes there (the app reads it once)
    client = redis.Redis.from_url(redis_url())
    client.flushdb()
    receiver = OtlpReceiver().start()
    env = {
        "REDIS_URL": redis_url(),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db')}/jobpilot.db",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
        "OTEL_TRACES_EXPORTER": "none",
        "WORKER_LOST_RETRY_DELAY": "0.2",
        "METRICS_RENDER_INTERVAL": "0",  # /metrics as of now, not up to 1 s before
    }
    log_dir: Path = tmp_path_factory.mktemp("logs")
    worker = WorkerProcess(env, log_dir, extra_args=("--max-tasks-per-child", "3")).start()
    try:
        for result in send_mixed_workload(app):
            result.get(timeout=30)

        def settled() -> bool:
            samples = samples_by_labels(worker.metrics_url)
            return sum(samples.get("celery_task_finished_total", {}).values()) >= MIXED_DELIVERIES

        wait_until(settled, 60, interval=0.2, message="every delivery to end")

        def exported_all() -> bool:
            finished = receiver.latest("celery.task.finished")
            return sum(p.value for p in finished.values()) >= MIXED_DELIVERIES

        wait_until(exported_all, 10, interval=0.1, message="the last counts over OTLP")
        yield receiver, samples_by_labels(worker.metrics_url)
    except BaseException:
        print(worker.log()[-6000:])
        raise
    finally:
        worker.stop(timeout=10)
        receiver.stop()
        client.close()
        patch.undo()


def by_series(points: dict[Any, ReceivedPoint], *keys: str) -> dict[tuple[Any, ...], float]:
    """Cumulative values summed by the given attributes."""
    out: dict[tuple[Any, ...], float] = defaultdict(float)
    for point in points.values():
        out[tuple(point.attributes.get(key) for key in keys)] += (
            point.count if point.kind == "histogram" else point.value
        )
    return dict(out)


def from_metrics(samples: Samples, name: str, *labels: str) -> dict[tuple[Any, ...], float]:
    out: dict[tuple[Any, ...], float] = defaultdict(float)
    for key, value in samples.get(name, {}).items():
        found = dict(key)
        out[tuple(found.get(label) for label in labels)] += value
    return dict(out)


def test_otlp_counts_by_queue_task_and_outcome_equal_metrics(
    exported: tuple[OtlpReceiver, Samples],
) -> None:
    receiver, samples = exported
    destination, task = "messaging.destination.name", "celery.task.name"
    # Then every count is /metrics's, series by series (zeros included)
    finished = by_series(receiver.latest("celery.task.finished"), destination, task, "celery.task.outcome")  # fmt: skip
    assert finished == from_metrics(samples, "celery_task_finished_total", "queue", "task", "outcome")  # fmt: skip
    consumed = by_series(receiver.latest("messaging.client.consumed.messages"), destination, task)
    assert consumed == from_metrics(samples, "celery_task_received_total", "queue", "task")
    sent = by_series(receiver.latest("messaging.client.sent.messages"), destination, task)
    assert sent == from_metrics(samples, "celery_task_published_total", "queue", "task")
    durations = receiver.latest("messaging.process.duration")
    runs = by_series(durations, destination, task)
    assert runs == from_metrics(samples, "celery_task_runtime_seconds_count", "queue", "task")
    waits = by_series(receiver.latest("celery.task.queue_wait.duration"), destination, task)
    assert waits == from_metrics(samples, "celery_task_queue_wait_seconds_count", "queue", "task")
    depth = by_series(receiver.latest("celery.queue.depth"), destination)
    assert depth == from_metrics(samples, "celery_queue_depth", "queue")
    assert set(depth) == {(queue,) for queue in QUEUES}
    # And the counts are the workload's, not only equal to each other
    assert finished[("briefings", "briefing_compile", "succeeded")] == 10
    assert finished[("default", "tests.fail", "failed")] == 3
    assert finished[("default", "tests.kill_own_process", "retried")] == 2
    assert finished[("default", "tests.kill_own_process", "failed")] == 1
    assert finished[("default", "unknown", "rejected")] == 1
    assert consumed[("scraping", "scrape_page")] == 5
    assert sent[("default", "tests.retry_twice")] == 2  # published from a pool process
    assert sent[("default", "tests.kill_own_process")] == 2  # from the main process
    # And each histogram's buckets add up to the /metrics buckets, failures included
    for (queue, name), count in runs.items():
        buckets = [0] * (len(RUNTIME_BUCKETS) + 1)
        for point in durations.values():
            if point.attributes[destination] == queue and point.attributes[task] == name:
                assert point.explicit_bounds == list(RUNTIME_BUCKETS)
                buckets = [a + b for a, b in zip(buckets, point.bucket_counts, strict=True)]
        cumulative = [sum(buckets[: i + 1]) for i in range(len(buckets))]
        bounds = [*(str(float(b)) for b in RUNTIME_BUCKETS), "+Inf"]
        expected = [
            samples["celery_task_runtime_seconds_bucket"][
                tuple(sorted({"le": le, "queue": queue, "task": name}.items()))
            ]
            for le in bounds
        ]
        assert cumulative == expected, (queue, name)
        assert cumulative[-1] == count


def test_names_units_and_attributes_are_the_pinned_ones(
    exported: tuple[OtlpReceiver, Samples],
) -> None:
    receiver, _ = exported
    expected = {
        "messaging.process.duration": ("histogram", "s"),
        "messaging.client.consumed.messages": ("sum", "{message}"),
        "messaging.client.sent.messages": ("sum", "{message}"),
        "celery.queue.depth": ("gauge", "{message}"),
        "celery.queue.oldest_message.age": ("gauge", "s"),
        "celery.task.queue_wait.duration": ("histogram", "s"),
        "celery.task.finished": ("sum", "{task}"),
    }
    for name, (kind, unit) in expected.items():
        points = receiver.metric_points(name)
        assert points, name
        assert {(p.kind, p.unit) for p in points} == {(kind, unit)}, name
        assert {p.temporality for p in points} <= {"AGGREGATION_TEMPORALITY_CUMULATIVE", ""}
        assert all(p.monotonic for p in points if p.kind == "sum"), name
        assert {p.scope for p in points} == {"jobpilot.telemetry"}
        assert all(p.attributes["messaging.system"] == "redis" for p in points), name
        assert all(p.resource["service.name"] == "jobpilot-worker" for p in points)
    durations = receiver.latest("messaging.process.duration")
    keys = {frozenset(p.attributes) for p in durations.values()}
    base = {
        "messaging.system",
        "messaging.destination.name",
        "messaging.operation.name",
        "celery.task.name",
    }
    assert keys == {frozenset(base), frozenset(base | {"error.type"})}
    assert {p.attributes["messaging.operation.name"] for p in durations.values()} == {"process"}
    errors = {
        (p.attributes["celery.task.name"], p.attributes["error.type"]): p.count
        for p in durations.values()
        if "error.type" in p.attributes
    }
    # error.type on failures only: the fully qualified class (builtins bare, as the SDK writes it)
    assert errors == {
        ("tests.fail", "ValueError"): 3,
        ("tests.kill_own_process", "billiard.exceptions.WorkerLostError"): 1,
    }
    assert not any(p.has_min_max for p in durations.values())
    consumed = receiver.latest("messaging.client.consumed.messages")
    assert {p.attributes["messaging.operation.name"] for p in consumed.values()} == {"process"}
    sent = receiver.latest("messaging.client.sent.messages")
    assert {p.attributes["messaging.operation.name"] for p in sent.values()} == {"send"}
    finished = receiver.latest("celery.task.finished")
    assert {frozenset(p.attributes) for p in finished.values()} == {
        frozenset(
            {
                "messaging.system",
                "messaging.destination.name",
                "celery.task.name",
                "celery.task.outcome",
            }
        )
    }
    for name in ("celery.queue.depth", "celery.queue.oldest_message.age"):
        assert {frozenset(p.attributes) for p in receiver.latest(name).values()} == {
            frozenset({"messaging.system", "messaging.destination.name"})
        }
    assert not any("health_check_task" in str(p.attributes) for p in receiver.points)


def test_a_bad_metric_variable_stops_the_worker_with_one_line(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**worker_env, "OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "-1"}
    worker = WorkerProcess(env, tmp_path).start(wait=False)
    assert worker.wait_exit(30) != 0
    line = "settings: OTEL_METRIC_EXPORT_INTERVAL: must be a positive number of milliseconds, not '-1'"  # fmt: skip
    assert [row for row in worker.log().splitlines() if row.startswith("settings:")] == [line]
