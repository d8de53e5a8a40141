"""Traces from a real prefork worker, received and decoded by a real OTLP/HTTP receiver."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.worker_process import ROOT, WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration

SECRET = "hunter2-planted-secret"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver().start()
    yield server
    server.stop()


def traced_env(worker_env: dict[str, str], receiver: OtlpReceiver) -> dict[str, str]:
    return {
        **worker_env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def publish_from_a_producer(env: dict[str, str], task: str, args: list[object]) -> str:
    """Publish from a separate process that called telemetry.install(app); returns the task id."""
    code = (
        "import sys, telemetry\n"
        "from worker.celery_app import app\n"
        "telemetry.install(app)\n"
        f"print(app.send_task({task!r}, args={args!r}).id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


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
        "messaging.system": "celery",
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
    # Given pool processes that exit after every task
    start_worker(traced_env(worker_env, receiver), extra_args=("--max-tasks-per-child", "1"))
    sent = [
        app.send_task("briefing_compile", args=["t", ["x"]], ignore_result=False) for _ in range(12)
    ]
    for result in sent:
        result.get(timeout=60)
    # Then each of the N executions has its run span at the receiver
    ids = {r.id for r in sent}
    wait_until(
        lambda: ids <= {s.attributes["messaging.message.id"] for s in receiver.named("run/")}, 20
    )


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
    request = urllib.request.Request(
        worker.metrics_url, headers={"Accept": "application/openmetrics-text"}
    )

    def exemplar_lines() -> list[str]:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
        return [
            line
            for line in text.splitlines()
            if 'task="scrape_page"' in line and "# {trace_id=" in line
        ]

    lines = wait_until(exemplar_lines, 10, interval=0.3)
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
