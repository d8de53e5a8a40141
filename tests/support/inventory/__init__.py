"""Another team's Celery app: a module of its own, with its own queues and routes.

It never imports ``worker``; its only link to this project is ``telemetry.install(app)``.
``celery -A tests.support.inventory worker -Q orders,invoices -c 2 -P prefork``.

What a team might configure differently comes from ``INVENTORY_*`` variables:
``INVENTORY_ACCEPT`` (``accept_content``, comma-separated; ``json`` by default) and
``INVENTORY_CONSUMER`` (``worker_consumer``; Celery's own by default).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.worker.consumer import Consumer
from kombu import Queue

import telemetry

app = Celery("inventory", broker=os.environ.get("INVENTORY_BROKER_URL", "redis://localhost:6379/0"))
app.conf.update(
    task_queues=[Queue("orders"), Queue("invoices")],
    task_default_queue="orders",
    task_routes={"invoice_*": {"queue": "invoices"}},
    task_serializer="json",
    accept_content=os.environ.get("INVENTORY_ACCEPT", "json").split(","),
    task_acks_late=True,
    worker_prefetch_multiplier=1,
)
if "INVENTORY_CONSUMER" in os.environ:
    app.conf.worker_consumer = os.environ["INVENTORY_CONSUMER"]


@app.task(name="order_ship")
def order_ship(order: int) -> int:
    return order


@app.task(name="order_audit", bind=True)
def order_audit(self: Task, order: int, *, strict: bool = False) -> str:
    return f"{self.name}:{order}:{strict}"


@app.task(name="order_note", typing=False)
def order_note(note: str) -> str:
    return note


@app.task(name="invoice_send")
def invoice_send(invoice: int) -> int:
    return invoice


@app.task(name="order_cancel")
def order_cancel(order: int) -> None:
    raise LookupError(f"no order {order}")


class AuditedConsumer(Consumer):  # type: ignore[misc]
    """A team's own consumer: Celery's, with one more log line at connect."""

    def connect(self) -> Any:
        connection = super().connect()
        print("inventory consumer connected", flush=True)
        return connection


class NotAConsumer:
    """A ``worker_consumer`` that is no subclass of Celery's: poison safety cannot extend it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a worker must never build it")


telemetry.install(app, exhausted=True)
