"""Running the inventory app (``tests.support.inventory``) in tests: its worker, its env, and
the scenario that proves it gets the whole telemetry.

Kept apart from the app module, which installs the telemetry when imported: the test
process never imports it. The scenario runs in this venv (``tests/telemetry/wiring/test_any_app.py``)
and in clean venvs holding only the jobpilot-telemetry distribution
(``tests/packages/test_jobpilot_telemetry.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.conftest import redis_url
from tests.support.endpoints import fetch, ready_body
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.scrape import samples_by_labels
from tests.support.tracing import run_as_producer
from tests.support.worker_process import ROOT, WorkerProcess, wait_until

APP = "tests.support.inventory"
#: What the producer publishes: orders to run now, invoices to wait on their queue, and one
#: order to wait in the worker for its ETA.
ORDERS, INVOICES, LATER = 3, 2, 1
#: Further away than the scenario lasts, closer than the visibility timeout.
LATER_COUNTDOWN_SECONDS = 600


def worker_command(
    app: str = APP, celery: Sequence[str] = (sys.executable, "-m", "celery")
) -> tuple[str, ...]:
    """``celery -A app worker``, prefork, concurrency 2."""
    return (*celery, "-A", app, "worker", "-c", "2", "-P", "prefork")


WORKER = worker_command()


def inventory_env(receiver: OtlpReceiver | None) -> dict[str, str]:
    """The inventory app on the test Redis, tracing into ``receiver`` (no tracing for None),
    probing every second. ``OTEL_SERVICE_NAME`` is left unset: the spans are named after the app."""
    tracing = (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        if receiver is not None
        else {"OTEL_SDK_DISABLED": "true"}
    )
    return {
        "INVENTORY_BROKER_URL": redis_url(),
        **tracing,
        "READINESS_INTERVAL": "1",
        "QUEUE_POLL_INTERVAL": "0.5",
        "METRICS_RENDER_INTERVAL": "0",
    }


def publish_orders_and_invoices(
    env: dict[str, str], app: str = APP, python: str = sys.executable, cwd: Path = ROOT
) -> list[str]:
    """Orders, invoices and a later order from a producer process of the same app; the
    orders' task ids."""
    out = run_as_producer(
        env,
        f"from {app} import app\n"
        f"ids = [app.send_task('order_ship', args=[n]).id for n in range({ORDERS})]\n"
        f"ids += [app.send_task('invoice_send', args=[n]).id for n in range({INVOICES})]\n"
        f"for n in range({LATER}):\n"
        f"    app.send_task('order_ship', args=[n], countdown={LATER_COUNTDOWN_SECONDS})\n"
        "print(' '.join(ids))\n",
        python=python,
        cwd=cwd,
    )
    return out.split()[:ORDERS]


def check_the_whole_telemetry(
    start_worker: Callable[..., WorkerProcess],
    receiver: OtlpReceiver,
    app: str = APP,
    celery: Sequence[str] = (sys.executable, "-m", "celery"),
    python: str = sys.executable,
    cwd: Path = ROOT,
) -> WorkerProcess:
    """Given the inventory app's producer publishing orders, invoices and an order for later,
    and its worker consuming orders only, then the worker serves exact per-queue counts with
    exemplars, the order it holds for its ETA, a ready /readyz from a real health round trip,
    the waiting invoices' depth and age, and run spans parented by the producer's spans,
    named after the app."""
    env = inventory_env(receiver)
    order_ids = publish_orders_and_invoices(env, app, python, cwd)
    worker = start_worker(
        env, command=[*worker_command(app, celery), "-Q", "orders", "--loglevel", "INFO"], cwd=cwd
    )

    def counted() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
        samples = samples_by_labels(worker.metrics_url)
        key = (("outcome", "succeeded"), ("queue", "orders"), ("task", "order_ship"))
        done = samples["celery_task_finished_total"].get(key) == ORDERS
        waiting = samples["celery_queue_depth"].get((("queue", "invoices"),)) == INVOICES
        held = samples["celery_tasks_eta_waiting"].get((("queue", "orders"),)) == LATER
        return samples if done and waiting and held else None

    samples = wait_until(
        counted, 30, message="3 orders finished, 2 invoices waiting, 1 order held for its ETA"
    )
    received = samples["celery_task_received_total"]
    assert received[(("queue", "orders"), ("task", "order_ship"))] == ORDERS + LATER
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
        # OTEL_SERVICE_NAME is unset: the app's main name, Celery("inventory")
        assert run.resource["service.name"] == "inventory"
        assert producer.resource["service.name"] == "inventory"
    return worker
