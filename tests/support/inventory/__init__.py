"""Another team's Celery app: a module of its own, with its own queues and routes.

It never imports ``worker``; its only link to this project is ``telemetry.install(app)``.
``celery -A tests.support.inventory worker -Q orders,invoices -c 2 -P prefork``.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

import telemetry

app = Celery("inventory", broker=os.environ.get("INVENTORY_BROKER_URL", "redis://localhost:6379/0"))
app.conf.update(
    task_queues=[Queue("orders"), Queue("invoices")],
    task_default_queue="orders",
    task_routes={"invoice_*": {"queue": "invoices"}},
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
)


@app.task(name="order_ship")
def order_ship(order: int) -> int:
    return order


@app.task(name="invoice_send")
def invoice_send(invoice: int) -> int:
    return invoice


@app.task(name="order_cancel")
def order_cancel(order: int) -> None:
    raise LookupError(f"no order {order}")


telemetry.install(app, exhausted=True)
