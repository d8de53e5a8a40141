"""A team's Celery app that knows nothing of the telemetry: it never calls ``install``.

``opentelemetry-instrument celery -A tests.support.ledger worker`` (``docs/zero-code.md``)
gives it the telemetry. Each ``post`` makes a span of its own, runs a SQLAlchemy
query (its engine instrumented by the app, built before the pool forks) and one
Redis command of its own inside it.
"""

from __future__ import annotations

import os

import redis
from celery import Celery
from kombu import Queue
from opentelemetry import trace
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy import create_engine, text

BROKER = os.environ.get("LEDGER_BROKER_URL", "redis://localhost:6379/0")

app = Celery("ledger", broker=BROKER, backend=os.environ.get("LEDGER_RESULT_BACKEND"))
app.conf.update(
    task_queues=[Queue("ledger")],
    task_default_queue="ledger",
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
)

tracer = trace.get_tracer("ledger")
engine = create_engine("sqlite://")
# SQLAlchemy 2.1 is newer than upstream's instrumentation declares, so
# opentelemetry-instrument skips it: the app instruments its engine itself.
SQLAlchemyInstrumentor().instrument(engine=engine, skip_dep_check=True)
own_redis = redis.Redis.from_url(BROKER)


@app.task(name="post")
def post(entry: int) -> int:
    with tracer.start_as_current_span("ledger.post"):
        with engine.connect() as connection:
            value = int(connection.execute(text("SELECT :entry"), {"entry": entry}).scalar_one())
        own_redis.incr("ledger:posted")
    return value
