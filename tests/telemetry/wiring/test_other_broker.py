"""On a broker that is not Redis, the worker serves task metrics, readiness and traces,
and no depth or age: the inventory app's worker on the machine's RabbitMQ."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from kombu import Connection, Queue

from tests.support.endpoints import ready_body
from tests.support.inventory_worker import APP, WORKER, inventory_env
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.scrape import samples_by_labels
from tests.support.tracing import run_as_producer
from tests.support.worker_process import WorkerProcess, wait_until

pytestmark = pytest.mark.integration

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
ORDERS = 3


@pytest.fixture
def empty_orders() -> None:
    """The broker keeps queues between runs: start from an empty one."""
    with Connection(AMQP_URL, connect_timeout=5) as connection:
        queue = Queue("orders")(connection.default_channel)
        queue.declare()
        queue.purge()


def test_an_amqp_worker_has_task_metrics_readiness_and_traces_but_no_depth(
    start_worker: Callable[..., WorkerProcess], receiver: OtlpReceiver, empty_orders: None
) -> None:
    env = {**inventory_env(receiver), "INVENTORY_BROKER_URL": AMQP_URL}
    worker = start_worker(env, command=[*WORKER, "-Q", "orders", "--loglevel", "INFO"])
    ids = run_as_producer(
        env,
        f"from {APP} import app\n"
        f"print(' '.join(app.send_task('order_ship', args=[n]).id for n in range({ORDERS})))\n",
    ).split()

    key = (("outcome", "succeeded"), ("queue", "orders"), ("task", "order_ship"))
    wait_until(
        lambda: (
            samples_by_labels(worker.metrics_url)["celery_task_finished_total"].get(key) == ORDERS
        ),
        30,
        message="three orders finished",
    )
    assert "the broker is not Redis: no queue depth, age or broker check" in worker.log()
    samples = samples_by_labels(worker.metrics_url)
    assert (
        not samples["celery_queue_depth"] and not samples["celery_queue_oldest_message_age_seconds"]
    )
    body = ready_body(worker, 15)
    assert set(body["checks"]) == {"health_task"}
    run = receiver.wait_for("run/order_ship", message_id=ids[0])
    assert run.attributes["messaging.system"] == "rabbitmq"
