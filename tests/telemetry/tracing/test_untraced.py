"""Broker and bookkeeping commands make no client spans while upstream's Redis instrumentor is
active; a task's own client still does. Against the real Redis, with the real instrumentor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from celery.backends.redis import RedisBackend
from kombu import Connection, Exchange, Producer, Queue
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry import transport
from telemetry.broker import redis_for
from telemetry.tracing.untraced import (
    RESULT_BACKEND_CLIENTS,
    UntracedCommands,
    redis_instrumented,
    untraced,
)
from tests.conftest import redis_url

pytestmark = pytest.mark.integration


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Upstream's Redis instrumentor, active for every client, into an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    RedisInstrumentor().instrument(tracer_provider=provider)
    yield exporter
    RedisInstrumentor().uninstrument()


def names(exporter: InMemorySpanExporter) -> list[str]:
    return [span.name for span in exporter.get_finished_spans()]


def test_an_untraced_client_makes_no_span_a_plain_one_does(
    redis_client: redis.Redis, spans: InMemorySpanExporter
) -> None:
    quiet = untraced(redis.Redis).from_url(redis_url())
    quiet.set("ledger:a", 1)
    with quiet.pipeline() as pipe:
        pipe.incr("ledger:a").expire("ledger:a", 60).execute()
    assert quiet.get("ledger:a") == b"2"
    assert names(spans) == []
    plain = redis.Redis.from_url(redis_url())
    plain.incr("ledger:a")
    with plain.pipeline() as pipe:
        pipe.incr("ledger:a").execute()
    assert names(spans) == ["INCRBY", "INCRBY"]


def test_untraced_classes_are_made_once_and_stay_subclasses() -> None:
    made = untraced(redis.Redis)
    assert made is untraced(redis.Redis) is untraced(made)
    assert issubclass(made, redis.Redis) and issubclass(made, UntracedCommands)


def test_without_the_instrumentor_commands_run_as_redis_py_runs_them(
    redis_client: redis.Redis,
) -> None:
    assert not redis_instrumented()
    quiet = untraced(redis.Redis).from_url(redis_url())
    assert quiet.incr("ledger:b") == 1


def test_kombus_publish_through_the_telemetry_transport_makes_no_span(
    redis_client: redis.Redis, spans: InMemorySpanExporter
) -> None:
    """Given the same publish through kombu's own transport and through ours, then only
    kombu's own made its LPUSH span (the test's proof that it could)."""
    queue = Queue("ledger", Exchange("ledger", type="direct"), routing_key="ledger")

    def publish() -> None:
        with Connection(redis_url()) as connection:
            Producer(connection).publish({"n": 1}, exchange=queue.exchange, routing_key="ledger", declare=[queue])  # fmt: skip

    publish()
    stock = names(spans)
    assert any("LPUSH" in name for name in stock)
    spans.clear()
    transport.register("test")
    try:
        publish()
    finally:
        transport.unregister("test")
    assert names(spans) == []
    assert redis_client.llen("ledger") == 2


def test_the_telemetrys_own_clients_make_no_span(
    redis_client: redis.Redis, spans: InMemorySpanExporter
) -> None:
    client = redis_for(Connection(redis_url()))
    assert client.ping()
    client.llen("ledger")
    assert names(spans) == []


def test_the_result_backends_client_is_untraced_while_held(
    redis_client: redis.Redis, spans: InMemorySpanExporter
) -> None:
    """Given an app with a Redis result backend, then storing a result makes no span while
    the hold lasts, and the backend's own class is back after it."""
    original = RedisBackend.__dict__["_get_client"]
    RESULT_BACKEND_CLIENTS.hold("test")
    try:
        app = Celery("ledger", broker=redis_url(), backend=redis_url(), set_as_current=False)
        app.backend.store_result("quiet", 1, "SUCCESS")
        assert app.backend.get_task_meta("quiet")["result"] == 1
        assert names(spans) == []
    finally:
        RESULT_BACKEND_CLIENTS.release("test")
    assert RedisBackend.__dict__["_get_client"] is original
    app = Celery("ledger", broker=redis_url(), backend=redis_url(), set_as_current=False)
    app.backend.store_result("loud", 1, "SUCCESS")
    assert names(spans) != []


def test_install_holds_the_result_backends_clients_and_uninstall_lets_go() -> None:
    import telemetry

    original = RedisBackend.__dict__["_get_client"]
    app = Celery("ledger", broker=redis_url(), backend=redis_url(), set_as_current=False)
    telemetry.install(app)
    try:
        assert RedisBackend.__dict__["_get_client"] is not original
        assert issubclass(app.backend._get_client(), UntracedCommands)
    finally:
        telemetry.uninstall(app)
    assert RedisBackend.__dict__["_get_client"] is original
