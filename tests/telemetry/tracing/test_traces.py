"""Traces from a real prefork worker, received and decoded by a real OTLP/HTTP receiver."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.scrape import sample_sum, scrape
from tests.support.tracing import publish_from_a_producer, traced_env
from tests.support.worker_process import ROOT, WorkerProcess, wait_until
from worker.celery_app import app
from worker.command import worker_command

pytestmark = pytest.mark.integration

SECRET = "hunter2-planted-secret"


def exemplar_lines(worker: WorkerProcess, task: str) -> list[str]:
    """OpenMetrics lines of ``task``'s series that carry a trace-id exemplar."""
    request = urllib.request.Request(
        worker.metrics_url, headers={"Accept": "application/openmetrics-text"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return [
        line for line in text.splitlines() if f'task="{task}"' in line and "# {trace_id=" in line
    ]


def test_producer_and_run_spans_form_one_trace_with_the_pinned_attributes(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    env = traced_env(worker_env, receiver)
    worker = start_worker(env)
    task_id = publish_from_a_producer(env, "briefing_compile", ["topic", [SECRET]])
    run = receiver.wait_for("run/briefing_compile", message_id=task_id)
    producer = receiver.wait_for("apply_async/briefing_compile", message_id=task_id)
    assert (producer.kind, run.kind) == ("SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER")
    assert run.trace_id == producer.trace_id and run.parent_span_id == producer.span_id
    assert run.attributes == {
        "messaging.system": "redis",
        "messaging.destination.name": "briefings",
        "messaging.operation.type": "process",
        "messaging.message.id": task_id,
        "celery.task.name": "briefing_compile",
        "celery.task.retries": 0,
        "celery.task.outcome": "succeeded",
    }
    assert producer.attributes["messaging.operation.type"] == "send"
    assert run.resource["service.name"] == "jobpilot-worker"
    assert run.resource["celery.worker.hostname"] == worker.hostname
    assert {"service.version", "service.instance.id", "host.name"} <= set(run.resource)
    # No argument value reaches a span or a log line by default
    assert not any(SECRET in str(span.attributes) for span in receiver.spans)
    assert SECRET not in worker.log()


def test_a_failure_is_an_error_with_an_exception_event(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    start_worker(traced_env(worker_env, receiver))
    sent = app.send_task("tests.fail", args=[1])
    run = receiver.wait_for("run/tests.fail", message_id=sent.id)
    assert run.status_code == 2  # STATUS_CODE_ERROR
    assert "exception" in run.events and run.attributes["celery.task.outcome"] == "failed"


def test_no_span_is_lost_when_every_pool_process_is_recycled(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    # Given pool processes that exit after every task, and tasks that open a span of their
    # own under the run span and tag the run span
    start_worker(traced_env(worker_env, receiver), extra_args=("--max-tasks-per-child", "1"))
    sent = [app.send_task("tests.user_span", args=[n], queue="default") for n in range(20)]
    assert [result.get(timeout=60) for result in sent] == list(range(20))
    # Then each of the 20 executions has its run span at the receiver, with its tag,
    # and the task's own span under it
    ids = {r.id for r in sent}

    def runs() -> dict[str, Any]:
        return {s.attributes["messaging.message.id"]: s for s in receiver.named("run/")}

    wait_until(lambda: ids <= set(runs()) and len(receiver.named("user.work")) >= 20, 20)
    by_span = {run.span_id: run for run in runs().values()}
    assert sorted(run.attributes["tests.n"] for run in runs().values()) == list(range(20))
    for work in receiver.named("user.work"):
        run = by_span[work.parent_span_id]
        assert run.trace_id == work.trace_id and run.attributes["messaging.message.id"] in ids


def test_each_retry_is_a_run_span_of_its_own_in_the_same_trace(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    env = traced_env(worker_env, receiver)
    start_worker(env)
    task_id = publish_from_a_producer(env, "tests.retry_twice", ["k"])
    wait_until(lambda: len(receiver.named("run/tests.retry_twice")) == 3, 30)
    runs = receiver.named("run/tests.retry_twice")
    assert len({run.span_id for run in runs}) == 3 and len({run.trace_id for run in runs}) == 1
    assert {run.attributes["messaging.message.id"] for run in runs} == {task_id}
    assert sorted(run.attributes["celery.task.outcome"] for run in runs) == [
        "retried",
        "retried",
        "succeeded",
    ]


def test_a_hard_time_limit_is_recorded_by_the_main_process(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    env = {
        **traced_env(worker_env, receiver),
        "TASK_SOFT_TIME_LIMIT": "0.5",
        "TASK_TIME_LIMIT": "1",
    }
    start_worker(env)
    sent = app.send_task("tests.ignore_soft_limit", args=[30])
    span = receiver.wait_for("celery.time_limit/tests.ignore_soft_limit", timeout=30)
    assert span.kind == "SPAN_KIND_INTERNAL" and span.attributes["celery.task.outcome"] == "failed"
    assert span.attributes["messaging.message.id"] == sent.id


def test_exemplar_trace_ids_match_the_received_spans(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    env = traced_env(worker_env, receiver)
    worker = start_worker(env)
    task_id = publish_from_a_producer(env, "scrape_page", ["https://example.org/", 0])
    run = receiver.wait_for("run/scrape_page", message_id=task_id)
    lines = wait_until(lambda: exemplar_lines(worker, "scrape_page"), 10, interval=0.3)
    assert any(f'trace_id="{run.trace_id}"' in line for line in lines if "runtime" in line)
    assert any(f'trace_id="{run.trace_id}"' in line for line in lines if "queue_wait" in line)


def test_a_task_that_enqueues_another_gives_one_connected_trace(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    env = traced_env(worker_env, receiver)
    start_worker(env)
    parent_id = publish_from_a_producer(env, "tests.enqueue_child", [])
    outer = receiver.wait_for("run/tests.enqueue_child", message_id=parent_id)
    inner_publish = receiver.wait_for("apply_async/briefing_compile", parent_span_id=outer.span_id)
    inner_run = receiver.wait_for("run/briefing_compile", parent_span_id=inner_publish.span_id)
    assert outer.trace_id == inner_publish.trace_id == inner_run.trace_id


def test_worker_log_lines_carry_the_trace_id_while_a_task_runs(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    env = {**traced_env(worker_env, receiver), "LOG_FORMAT": "json"}
    worker = start_worker(env)
    task_id = publish_from_a_producer(env, "briefing_compile", ["t", ["x"]])
    run = receiver.wait_for("run/briefing_compile", message_id=task_id)
    lines = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    during_task = [line for line in lines if line.get("task_id") == task_id and "trace_id" in line]
    assert during_task, worker.log()[-2000:]
    assert {(line["trace_id"], line["span_id"]) for line in during_task} == {
        (run.trace_id, run.span_id)
    }


def test_task_arguments_are_recorded_truncated_only_when_asked(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    env = {**traced_env(worker_env, receiver), "TRACE_TASK_ARGS": "true"}
    start_worker(env)
    task_id = publish_from_a_producer(env, "briefing_compile", ["topic", [SECRET * 100]])
    run = receiver.wait_for("run/briefing_compile", message_id=task_id)
    recorded = run.attributes["celery.task.args"]
    assert SECRET in recorded and len(recorded) == 256
    assert run.attributes["celery.task.kwargs"] == "{}"


def test_exporter_none_still_creates_spans_and_propagates_context(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    # Given a worker that exports nothing, and a producer that exports to the receiver
    producer_env = traced_env(worker_env, receiver)
    worker = start_worker({**producer_env, "OTEL_TRACES_EXPORTER": "none"})
    task_id = publish_from_a_producer(producer_env, "tests.own_headers", [])
    published = receiver.wait_for("apply_async/tests.own_headers", message_id=task_id)
    # Then the message carried the producer's context into the task
    headers = app.AsyncResult(task_id).get(timeout=30)
    assert headers["traceparent"].split("-")[1:3] == [published.trace_id, published.span_id]
    # And the worker's run span existed (its trace id is on the exemplar) but was not exported
    lines = wait_until(
        lambda: [line for line in exemplar_lines(worker, "tests.own_headers") if "runtime" in line],
        10,
        interval=0.3,
    )
    assert f'trace_id="{published.trace_id}"' in lines[0]
    worker.stop()
    assert not receiver.named("run/")


def test_telemetry_disabled_adds_no_header_and_exports_no_span(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], receiver: OtlpReceiver
) -> None:
    env = {**traced_env(worker_env, receiver), "TELEMETRY_ENABLED": "false"}
    worker = start_worker(env)
    task_id = publish_from_a_producer(env, "tests.own_headers", [])
    assert app.AsyncResult(task_id).get(timeout=30) == {
        "traceparent": None,
        "x-jobpilot-published-at": None,
    }
    # A warm shutdown flushes whatever a process would have exported
    assert worker.stop() == 0
    assert receiver.requests == 0 and receiver.spans == []


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_in_process_pools_trace_from_the_main_process(
    pool: str,
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    receiver: OtlpReceiver,
) -> None:
    env = traced_env(worker_env, receiver)
    worker = start_worker(env, extra_args=("--pool", pool))
    task_id = publish_from_a_producer(env, "briefing_compile", ["t", ["x"]])
    run = receiver.wait_for("run/briefing_compile", message_id=task_id)
    producer = receiver.wait_for("apply_async/briefing_compile", message_id=task_id)
    assert run.parent_span_id == producer.span_id
    assert run.resource["celery.worker.hostname"] == worker.hostname
    # And the main process still serves its metrics, with the task counted
    wait_until(
        lambda: (
            sample_sum(
                scrape(worker.metrics_url), "celery_task_finished_total", task="briefing_compile"
            )
            == 1
        ),
        10,
        message="the task counted on /metrics",
    )


def test_tracing_runs_without_metrics(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    receiver: OtlpReceiver,
) -> None:
    # Given a worker with METRICS_ENABLED=false
    env = {**traced_env(worker_env, receiver), "METRICS_ENABLED": "false"}
    worker = start_worker(env)
    # When a producer publishes a task
    task_id = publish_from_a_producer(env, "briefing_compile", ["t", ["x"]])
    # Then its trace arrives, connected to the producer's span
    run = receiver.wait_for("run/briefing_compile", message_id=task_id)
    producer = receiver.wait_for("apply_async/briefing_compile", message_id=task_id)
    assert run.parent_span_id == producer.span_id
    # And nothing listens on the metrics port
    with pytest.raises(OSError):
        urllib.request.urlopen(worker.metrics_url, timeout=2)
    assert "serving /metrics" not in worker.log()


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "OTEL_TRACES_EXPORTER",
            "zipkin",
            "settings: OTEL_TRACES_EXPORTER: must be otlp, console or none",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/xml",
            "settings: OTEL_EXPORTER_OTLP_PROTOCOL: must be http/protobuf or grpc",
        ),
        (
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            "lots",
            "settings: OTEL_BSP_MAX_EXPORT_BATCH_SIZE: must be a positive number, not 'lots'",
        ),
    ],
)
def test_a_bad_exporter_variable_is_one_line_and_a_non_zero_exit(
    worker_env: dict[str, str], variable: str, value: str, line: str
) -> None:
    done = subprocess.run(
        worker_command(["default"], 1, "--without-mingle"),
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **worker_env, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert [x for x in (done.stdout + done.stderr).splitlines() if x.startswith("settings:")] == [
        line
    ]
    assert "Traceback" not in done.stderr
