"""The task counters are exact under prefork: every delivery ends in exactly one outcome."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable

import pytest

from tests.support.scrape import samples_by_labels
from tests.support.worker_process import WorkerProcess, wait_until
from tests.support.workload import MIXED_DELIVERIES, send_mixed_workload
from worker.celery_app import app

pytestmark = pytest.mark.integration

STARTED_OUTCOMES = ("succeeded", "failed", "retried", "requeued")


def per_task(samples: dict, name: str) -> dict[tuple[str, str], dict[str, float]]:  # type: ignore[type-arg]
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for labels, value in samples.get(name, {}).items():
        label = dict(labels)
        out[(label["queue"], label["task"])][label.get("outcome", "")] = value
    return out


def test_identities_hold_for_a_mixed_workload_with_crashes_and_recycling(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    # Given a prefork worker whose pool processes are recycled every 3 tasks
    worker = start_worker(
        {**worker_env, "WORKER_LOST_RETRY_DELAY": "0.2"}, extra_args=("--max-tasks-per-child", "3")
    )
    # When it runs successes, failures, retries, a revoked task, an unknown task and lost pool processes
    results = send_mixed_workload(app)
    revoked_id = str(uuid.uuid4())
    app.control.revoke(revoked_id, reply=True, timeout=5, destination=[worker.hostname])
    app.send_task("briefing_compile", args=["t", []], task_id=revoked_id)
    for result in results:
        result.get(timeout=30)
    expected_deliveries = MIXED_DELIVERIES + 1  # and the revoked one

    def idle() -> dict | None:  # type: ignore[type-arg]
        samples = samples_by_labels(worker.metrics_url)
        finished = sum(samples.get("celery_task_finished_total", {}).values())
        return samples if finished >= expected_deliveries else None

    samples = wait_until(idle, 60, interval=0.2, message="every delivery to finish")
    received = per_task(samples, "celery_task_received_total")
    started = per_task(samples, "celery_task_started_total")
    finished = per_task(samples, "celery_task_finished_total")
    # Then for every (queue, task): received = sum of outcomes, started = the outcomes that ran
    for key, outcomes in finished.items():
        assert received[key][""] == sum(outcomes.values()), key
        revoked_after_start = 0  # nothing here is revoked while running
        assert (
            started[key][""] == sum(outcomes[o] for o in STARTED_OUTCOMES) + revoked_after_start
        ), key
    # And the specific cases land where they should
    assert finished[("briefings", "briefing_compile")]["succeeded"] == 10
    assert finished[("briefings", "briefing_compile")]["revoked"] == 1
    assert started[("briefings", "briefing_compile")][""] == 10
    assert finished[("scraping", "scrape_page")]["succeeded"] == 5
    assert finished[("default", "tests.fail")]["failed"] == 3
    retried = finished[("default", "tests.retry_twice")]
    assert (
        retried["retried"],
        retried["succeeded"],
        started[("default", "tests.retry_twice")][""],
    ) == (2, 1, 3)
    lost = finished[("default", "tests.kill_own_process")]
    assert (
        lost["retried"],
        lost["failed"],
        started[("default", "tests.kill_own_process")][""],
    ) == (2, 1, 3)
    assert finished[("default", "unknown")]["rejected"] == 1
    exceptions = per_task(samples, "celery_task_exceptions_total")
    assert sum(exceptions[("default", "tests.fail")].values()) == 3
    # And nothing is left active or reserved, and health checks are not counted as tasks
    assert all(v == 0 for v in samples["celery_tasks_active"].values())
    assert all(v == 0 for v in samples["celery_tasks_reserved"].values())
    assert not any(task == "health_check_task" for _, task in received)
    # And publishes made by pool processes (Task.retry) and by the main process
    # (retries after a lost pool process) both reach this worker's counter
    published = per_task(samples, "celery_task_published_total")
    assert published[("default", "tests.retry_twice")][""] == 2
    assert published[("default", "tests.kill_own_process")][""] == 2
    assert not any(task == "health_check_task" for _, task in published)
    runtime_count = per_task(samples, "celery_task_runtime_seconds_count")
    assert runtime_count[("briefings", "briefing_compile")][""] == 10


def test_every_series_starts_at_zero(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    worker = start_worker(worker_env)
    samples = samples_by_labels(worker.metrics_url)
    finished = per_task(samples, "celery_task_finished_total")
    assert finished[("agents", "agent_plan_step")] == dict.fromkeys(
        ("succeeded", "failed", "retried", "requeued", "rejected", "revoked"), 0.0
    )
    assert per_task(samples, "celery_task_received_total")[("default", "example_task")][""] == 0
    assert {dict(k)["queue"] for k in samples["celery_queue_depth"]} == {
        "agents",
        "briefings",
        "scraping",
        "default",
    }
    assert not any(name.endswith("_created") for name in samples)
