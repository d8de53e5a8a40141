"""The mixed workload the exactness tests send to a jobpilot worker (with ``tests.support.tasks``).

    results = send_mixed_workload(app)     # then wait: result.get(timeout=...) for each
    ... until celery_task_finished_total sums to MIXED_DELIVERIES

It ends deliveries succeeded, failed, retried and rejected: 10 + 5 successes,
3 failures, a task retried twice, one that loses its pool process three times
(retried twice, then failed), and one task no worker knows.
"""

from __future__ import annotations

from celery import Celery
from celery.result import AsyncResult

#: Deliveries of the workload: each retry and each lost pool process is one more.
MIXED_DELIVERIES = 10 + 5 + 3 + 3 + 3 + 1


def send_mixed_workload(app: Celery) -> list[AsyncResult]:
    """Publish the workload; the results of its 15 successes, to wait on."""
    results = [
        app.send_task("briefing_compile", args=["t", ["some words here"]], ignore_result=False)
        for _ in range(10)
    ]
    results += [
        app.send_task("scrape_page", args=[f"https://example.org/{n}", 0], ignore_result=False)
        for n in range(5)
    ]
    for n in range(3):
        app.send_task("tests.fail", args=[n])
    app.send_task("tests.retry_twice", args=["r"])
    app.send_task("tests.kill_own_process", args=["k"])
    app.send_task("no_such_task")
    return results
