"""Run spans around Celery's own tracer of each task, as a process that runs tasks makes them.

Each task runs through the tracer Celery builds for it (``build_tracer``), called as a
pool process calls it, with the request a pool process gets; the spans go through
the hop's decoder, as the export process reads them.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from celery import Celery
from celery.app.trace import build_tracer
from celery.exceptions import Reject
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from telemetry.logs import TaskContextFilter
from telemetry.messages import HEALTH_TASK, REQUEUED_FROM_HEADER, RUN_SPAN, TRACEPARENT_HEADER
from telemetry.tracing.export.decoder import SpanDecoder
from telemetry.tracing.export.rows import encode, resource_line
from telemetry.tracing.run_ids import RunIds
from telemetry.tracing.run_tracer import RunTracer

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
seen: dict[str, Any] = {}


class Kept:
    """A relay keeping what it is sent, read back as the export process decodes it."""

    def __init__(self, provider: TracerProvider) -> None:
        self.line = resource_line(provider.resource)
        self.datagrams: list[bytes] = []

    def send(self, rows: Sequence[Sequence[Any]]) -> None:
        self.datagrams.append(encode(self.line, rows))

    def send_record(self, body: bytes) -> None:
        self.datagrams.append(self.line + b"\n" + body)

    def spans(self) -> list[ReadableSpan]:
        decoder = SpanDecoder()
        return [span for datagram in self.datagrams for span in decoder.decode(datagram)]


def make_app() -> Celery:
    app = Celery("runs", set_as_current=False)

    @app.task(name="runs.ok", shared=False)
    def ok() -> str:
        seen["span"] = trace.get_current_span()
        logging.getLogger("runs").info("inside")
        return "done"

    @app.task(name="runs.boom", shared=False)
    def boom() -> None:
        raise ValueError("boom")

    @app.task(name="runs.again", bind=True, shared=False, max_retries=3)
    def again(task: Any) -> None:
        raise task.retry(countdown=60, exc=KeyError("later"))

    @app.task(name="runs.reject", shared=False)
    def reject() -> None:
        raise Reject("no", requeue=False)

    @app.task(name="runs.wait", shared=False)
    def wait(name: str, fail: bool) -> None:
        seen[f"{name} started"].set()
        assert seen[f"{name} released"].wait(10)
        if fail:
            raise ValueError(name)

    @app.task(name=HEALTH_TASK, shared=False)
    def health() -> None:
        return None

    app.conf.task_ignore_result = True
    app.conf.broker_url = "memory://"
    for name, task in app.tasks.items():  # what a pool process builds when it starts
        task.__trace__ = build_tracer(name, task, app=app, hostname="celery@runs")
    return app


@pytest.fixture
def wired() -> Iterator[tuple[Celery, RunTracer, Kept]]:
    app = make_app()
    provider = TracerProvider()
    relay = Kept(provider)
    tracer = RunTracer(app, provider, relay, "redis", record_args=False)
    tracer.wrap()
    yield app, tracer, relay
    tracer.unwrap()


def request(
    app: Celery, task: str, drawn: bool = True, **fields: Any
) -> tuple[str, dict[str, Any]]:
    """A delivery's request as a pool process gets it; with the ids the main process drew."""
    task_id = str(uuid.uuid4())
    message = app.amqp.as_task_v2(task_id, task, args=(), kwargs={})
    request = {
        **message.headers,
        **message.properties,
        TRACEPARENT_HEADER: TRACEPARENT,
        "delivery_info": {"exchange": "", "routing_key": "default", "redelivered": False},
        "hostname": "celery@runs",
        **fields,
    }
    if drawn:
        request[RUN_SPAN] = RunIds(TracerProvider())(TRACEPARENT, f"run/{task}", dict)
    return task_id, request


def run(app: Celery, task: str, task_id: str, fields: dict[str, Any]) -> Any:
    return app.tasks[task].__trace__(task_id, (), {}, fields)


def test_a_task_runs_under_its_run_span_which_ends_with_its_outcome(
    wired: tuple[Celery, RunTracer, Kept],
) -> None:
    app, _, relay = wired
    task_id, fields = request(app, "runs.ok")
    ids = fields[RUN_SPAN]
    assert run(app, "runs.ok", task_id, fields)[0] == "done"
    # While it ran, its span was current, with the ids drawn at receipt
    context = seen["span"].get_span_context()
    assert (context.trace_id, context.span_id) == ids[:2]
    # And it ended as one record: the span, under the message's parent, with its outcome
    [span] = relay.spans()
    assert span.name == "run/runs.ok" and span.parent is not None
    assert (span.context.trace_id, span.context.span_id, span.parent.span_id) == (
        ids[0],
        ids[1],
        0x00F067AA0BA902B7,
    )
    assert span.attributes == {
        "messaging.system": "redis",
        "messaging.destination.name": "default",
        "messaging.operation.type": "process",
        "messaging.message.id": task_id,
        "celery.task.name": "runs.ok",
        "celery.task.retries": 0,
        "celery.task.outcome": "succeeded",
    }
    assert span.start_time is not None and span.end_time is not None
    assert span.start_time <= span.end_time
    assert trace.get_current_span() is trace.INVALID_SPAN  # and it is current no more


def test_a_failure_carries_the_stack_trace_celery_recorded(
    wired: tuple[Celery, RunTracer, Kept],
) -> None:
    app, _, relay = wired
    task_id, fields = request(app, "runs.boom")
    einfo = run(app, "runs.boom", task_id, fields)[0]
    [span] = relay.spans()
    assert span.status.status_code.name == "ERROR" and span.status.description == "ValueError"
    assert span.attributes is not None and span.attributes["celery.task.outcome"] == "failed"
    [event] = span.events
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    # the very text Celery formatted for the failure in the same process
    assert event.attributes["exception.stacktrace"] == einfo.traceback
    assert 'raise ValueError("boom")' in einfo.traceback


def test_a_retry_and_a_reject_end_as_the_tracer_state_says(
    wired: tuple[Celery, RunTracer, Kept],
) -> None:
    app, _, relay = wired
    for task in ("runs.again", "runs.reject"):
        task_id, fields = request(app, task)
        run(app, task, task_id, fields)
    retried, rejected = relay.spans()
    assert retried.attributes is not None and retried.attributes["celery.task.outcome"] == "retried"
    assert [(e.name, dict(e.attributes or {})) for e in retried.events] == [
        ("retry", {"reason": "Retry"})
    ]
    assert (
        rejected.attributes is not None and rejected.attributes["celery.task.outcome"] == "failed"
    )


def test_without_ids_in_the_request_the_process_draws_them_and_logs_them(
    wired: tuple[Celery, RunTracer, Kept], caplog: pytest.LogCaptureFixture
) -> None:
    app, _, relay = wired
    task_id, fields = request(app, "runs.ok", drawn=False)
    handler_filter = TaskContextFilter()
    caplog.handler.addFilter(handler_filter)
    with caplog.at_level(logging.INFO, logger="runs"):
        run(app, "runs.ok", task_id, fields)
    caplog.handler.removeFilter(handler_filter)
    [span] = relay.spans()
    assert span.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert fields[RUN_SPAN][:2] == (span.context.trace_id, span.context.span_id)
    [line] = [r for r in caplog.records if r.getMessage() == "inside"]
    assert (line.trace_id, line.span_id) == (  # type: ignore[attr-defined]
        f"{span.context.trace_id:032x}",
        f"{span.context.span_id:016x}",
    )


def test_a_requeued_run_links_the_failed_run(wired: tuple[Celery, RunTracer, Kept]) -> None:
    app, _, relay = wired
    failed_run = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    task_id, fields = request(app, "runs.ok", **{REQUEUED_FROM_HEADER: failed_run})
    run(app, "runs.ok", task_id, fields)
    [span] = relay.spans()
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
        (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)
    ]


def test_arguments_are_recorded_only_when_asked() -> None:
    app = make_app()
    provider = TracerProvider()
    relay = Kept(provider)
    tracer = RunTracer(app, provider, relay, "redis", record_args=True)
    tracer.wrap()
    task_id, fields = request(app, "runs.ok")
    app.tasks["runs.ok"].__trace__(task_id, ("x" * 300,), {"k": 1}, fields)
    tracer.unwrap()
    [span] = relay.spans()
    assert span.attributes is not None
    assert span.attributes["celery.task.args"] == repr(("x" * 300,))[:256]
    assert span.attributes["celery.task.kwargs"] == "{'k': 1}"


def test_unwrap_puts_celerys_tracers_back_and_the_health_task_is_never_wrapped() -> None:
    app = make_app()
    before = {name: task.__trace__ for name, task in app.tasks.items()}
    tracer = RunTracer(app, TracerProvider(), None, "redis", record_args=False)
    tracer.wrap()
    tracer.wrap()  # idempotent
    during = {name: task.__trace__ for name, task in app.tasks.items()}
    assert during[HEALTH_TASK] is before[HEALTH_TASK]
    assert all(during[name] is not before[name] for name in before if name != HEALTH_TASK)
    tracer.unwrap()
    assert {name: task.__trace__ for name, task in app.tasks.items()} == before


def test_a_broken_request_never_fails_the_task(wired: tuple[Celery, RunTracer, Kept]) -> None:
    app, _, relay = wired
    task_id, fields = request(app, "runs.ok", retries="not a number")
    assert run(app, "runs.ok", task_id, fields)[0] == "done"
    assert relay.spans() == []


def test_a_delivery_celery_skips_as_done_makes_no_span(
    wired: tuple[Celery, RunTracer, Kept],
) -> None:
    app, tracer, relay = wired
    skipped = tracer._traced("runs.ok", lambda *_: (None, None, None, None))
    task_id, fields = request(app, "runs.ok")
    skipped(task_id, (), {}, fields)
    assert relay.spans() == []


def test_in_a_threads_pool_a_failure_marks_only_its_own_run_span(
    wired: tuple[Celery, RunTracer, Kept],
) -> None:
    """Given a task that will fail, running in one thread, and another task started after it
    in another thread, when the first fails, then only its own span carries the failure."""
    app, _, relay = wired
    ids, threads = {}, []
    for name, fail in (("first", True), ("second", False)):
        seen[f"{name} started"], seen[f"{name} released"] = threading.Event(), threading.Event()
        task_id, fields = request(app, "runs.wait")
        ids[name] = task_id
        thread = threading.Thread(
            target=lambda t=task_id, f=fields, n=name, x=fail: app.tasks["runs.wait"].__trace__(
                t, (n, x), {}, f
            )
        )
        thread.start()
        threads.append(thread)
        assert seen[f"{name} started"].wait(10)
    for name, thread in zip(("first", "second"), threads, strict=True):
        seen[f"{name} released"].set()
        thread.join(10)
    spans = {span.attributes["messaging.message.id"]: span for span in relay.spans()}  # type: ignore[index]
    failed, other = spans[ids["first"]], spans[ids["second"]]
    assert failed.status.status_code.name == "ERROR" and [e.name for e in failed.events] == [
        "exception"
    ]
    assert other.status.status_code.name == "UNSET" and not other.events
