"""Database and Redis client spans join the task's trace; nothing else is traced."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.database import schema_command
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.tracing import publish_from_a_producer, traced_env
from tests.support.worker_process import WorkerProcess, wait_until

pytestmark = pytest.mark.integration

SQLALCHEMY_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
ASYNCPG_SCOPE = "opentelemetry.instrumentation.asyncpg"
REDIS_SCOPE = "opentelemetry.instrumentation.redis"


def descends_from(span: ReceivedSpan, ancestor_id: str, spans: list[ReceivedSpan]) -> bool:
    by_id = {s.span_id: s for s in spans}
    current: ReceivedSpan | None = span
    while current is not None:
        if current.parent_span_id == ancestor_id:
            return True
        current = by_id.get(current.parent_span_id)
    return False


def test_the_database_write_is_traced_under_the_run_span(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    postgres_url: str,
    receiver: OtlpReceiver,
) -> None:
    # Given a traced worker on Postgres
    assert schema_command(postgres_url).returncode == 0
    env = {**traced_env(worker_env, receiver), "DATABASE_URL": postgres_url}
    start_worker(env)
    # When a producer publishes example_task, which writes through asyncio.run()
    task_id = publish_from_a_producer(env, "example_task", ["order-traced", {"amount": 1}])
    run = receiver.wait_for("run/example_task", message_id=task_id)
    producer = receiver.wait_for("apply_async/example_task", message_id=task_id)

    # Then SQLAlchemy and asyncpg spans sit under the run span, in the producer's trace
    def database_spans() -> list[ReceivedSpan]:
        spans = receiver.in_trace(run.trace_id)
        found = [s for s in spans if s.scope in (SQLALCHEMY_SCOPE, ASYNCPG_SCOPE)]
        return found if {s.scope for s in found} == {SQLALCHEMY_SCOPE, ASYNCPG_SCOPE} else []

    spans = wait_until(database_spans, 20, message="database spans")
    assert run.trace_id == producer.trace_id
    trace = receiver.in_trace(run.trace_id)
    assert all(descends_from(s, run.span_id, trace) for s in spans)
    assert any("INSERT" in s.name or "INSERT" in str(s.attributes) for s in spans)
    # Statement parameters are not recorded
    assert not any("order-traced" in str(s.attributes) for s in spans)


def test_the_pub_sub_publish_is_traced_and_broker_traffic_is_not(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    env = traced_env(worker_env, receiver)
    start_worker(env)
    task_id = publish_from_a_producer(env, "publish_agent_event", ["run-1", {"type": "hello"}])
    run = receiver.wait_for("run/publish_agent_event", message_id=task_id)
    publish = wait_until(
        lambda: [s for s in receiver.in_trace(run.trace_id) if s.scope == REDIS_SCOPE],
        20,
        message="redis span",
    )
    assert [s.name for s in publish] == ["PUBLISH"]
    assert publish[0].parent_span_id == run.span_id
    # kombu's, the probes' and the poller's Redis commands never make spans
    assert {s.scope for s in receiver.spans} <= {"jobpilot.telemetry", REDIS_SCOPE}
    assert len(receiver.named("PUBLISH")) == 1
    assert not [s for s in receiver.spans if s.name.endswith("/health_check_task")]
