"""Another team's app gets the whole telemetry from ``telemetry.install(app)`` alone.

The app (``tests.support.inventory``) is a module of its own, with its own queues
and routes, and never imports ``worker``. A real prefork worker of it runs
against the real Redis and exports to a real OTLP/HTTP receiver.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.support.endpoints import fetch, ready_body
from tests.support.inventory_worker import APP, WORKER, inventory_env
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.scrape import samples_by_labels
from tests.support.tracing import run_as_producer
from tests.support.worker_process import ROOT, WorkerProcess, wait_until

pytestmark = pytest.mark.integration

ORDERS, INVOICES = 3, 2


def publish(env: dict[str, str]) -> list[str]:
    """Orders and invoices from a producer process of the same app; the task ids."""
    out = run_as_producer(
        env,
        f"from {APP} import app\n"
        f"ids = [app.send_task('order_ship', args=[n]).id for n in range({ORDERS})]\n"
        f"ids += [app.send_task('invoice_send', args=[n]).id for n in range({INVOICES})]\n"
        "print(' '.join(ids))\n",
    )
    return out.split()


def test_another_apps_worker_gets_metrics_readiness_depth_exemplars_and_traces(
    start_worker: Callable[..., WorkerProcess], receiver: OtlpReceiver, redis_client: object
) -> None:
    """Given the inventory app's producer publishing orders and invoices, and its worker
    consuming orders only, then the worker serves exact per-queue counts with exemplars,
    a ready /readyz from a real health round trip, the waiting invoices' depth and age,
    and run spans parented by the producer's spans."""
    env = inventory_env(receiver)
    order_ids = publish(env)[:ORDERS]
    worker = start_worker(
        env,
        command=[*WORKER, "-Q", "orders", "--loglevel", "INFO"],
    )

    def counted() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
        samples = samples_by_labels(worker.metrics_url)
        key = (("outcome", "succeeded"), ("queue", "orders"), ("task", "order_ship"))
        done = samples["celery_task_finished_total"].get(key) == ORDERS
        waiting = samples["celery_queue_depth"].get((("queue", "invoices"),)) == INVOICES
        return samples if done and waiting else None

    samples = wait_until(counted, 30, message="3 orders finished and 2 invoices waiting")
    received = samples["celery_task_received_total"]
    assert received[(("queue", "orders"), ("task", "order_ship"))] == ORDERS
    # Every task of the app starts at zero on its routed queue, the probe task is left out.
    assert received[(("queue", "invoices"), ("task", "invoice_send"))] == 0
    assert not any(dict(labels).get("task") == "health_check_task" for labels in received)
    assert samples["celery_queue_oldest_message_age_seconds"][(("queue", "invoices"),)] > 0
    assert samples["celery_worker_consumed_queue"] == {(("queue", "orders"),): 1.0}

    body = ready_body(worker, 15)
    assert body["checks"]["broker"]["up"] and body["checks"]["health_task"]["up"]
    assert "database" not in body["checks"]

    _, text = fetch(worker, "/metrics", accept="application/openmetrics-text")
    assert any(
        'task="order_ship"' in line and "# {trace_id=" in line
        for line in text.decode().splitlines()
    )

    for task_id in order_ids:
        run = receiver.wait_for("run/order_ship", message_id=task_id)
        producer = receiver.wait_for("apply_async/order_ship", message_id=task_id)
        assert run.trace_id == producer.trace_id and run.parent_span_id == producer.span_id
        assert run.attributes["messaging.system"] == "redis"
        assert run.attributes["messaging.destination.name"] == "orders"
        assert run.resource["service.name"] == "inventory"


def test_the_app_module_never_imports_the_jobpilot_worker() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, {APP}; print('worker' in sys.modules)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
