"""DeliveryRecorder against a fresh registry, with stand-in requests (no broker)."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from telemetry.messages import sampled_trace_id
from telemetry.metrics.at_least_once import EtaTrap, StartedWindow
from telemetry.metrics.catalogue import WorkerMetrics
from telemetry.metrics.recorder import DeliveryRecorder, queue_wait_seconds

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass
class StandInRequest:
    """What ``TelemetryRequest`` gives an observer, without a broker."""

    type: str
    delivery_info: dict[str, Any]
    request_dict: dict[str, Any]
    id: str = "t-1"
    eta: Any = None
    time_start: float | None = None
    started_at: float | None = None
    time_limits: tuple[float | None, float | None] = (None, None)
    task: Any = None
    metrics_series: Any = field(default=None, repr=False)

    def trace_id(self) -> str | None:
        return sampled_trace_id(self.request_dict)


def request(task: str = "briefing_compile", queue: str = "briefings", **headers: Any) -> Any:
    return StandInRequest(task, {"routing_key": queue}, headers)


def start(rec: DeliveryRecorder, req: Any) -> None:
    """As the mixin does: the start time is kept, then the observers hear of it."""
    req.started_at = time.monotonic()
    rec.on_started(req)


def recorder() -> tuple[DeliveryRecorder, CollectorRegistry]:
    registry = CollectorRegistry()
    return DeliveryRecorder(
        WorkerMetrics(registry),
        {"briefings", "default"},
        lambda n: n != "ghost",
        StartedWindow(3600, 100_000),
    ), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def succeeded(registry: CollectorRegistry) -> float | None:
    """Finished successfully, for the briefing task ``request()`` makes by default."""
    return value(
        registry,
        "celery_task_finished_total",
        queue="briefings",
        task="briefing_compile",
        outcome="succeeded",
    )


def test_one_delivery_counts_once_whatever_reports_it() -> None:
    rec, registry = recorder()
    req = request()
    rec.on_received(req)
    rec.on_received(req)
    start(rec, req)
    rec.on_finished(req, "succeeded", None)
    assert (
        value(registry, "celery_task_received_total", queue="briefings", task="briefing_compile")
        == 1
    )
    assert succeeded(registry) == 1
    assert value(registry, "celery_tasks_active", queue="briefings") == 0
    assert value(registry, "celery_tasks_reserved", queue="briefings") == 0


def test_unknown_queues_and_tasks_collapse_to_fixed_labels() -> None:
    rec, registry = recorder()
    rec.on_received(request(task="ghost", queue="celery@host"))
    assert value(registry, "celery_task_received_total", queue="other", task="unknown") == 1


def test_revoked_at_receipt_counts_as_received_and_revoked() -> None:
    rec, registry = recorder()
    req = request()
    rec.on_finished(req, "revoked", None)
    assert (
        value(registry, "celery_task_received_total", queue="briefings", task="briefing_compile")
        == 1
    )
    assert (
        value(registry, "celery_task_started_total", queue="briefings", task="briefing_compile")
        == 0
    )
    assert value(registry, "celery_tasks_reserved", queue="briefings") == 0


def test_health_checks_are_not_task_metrics() -> None:
    rec, registry = recorder()
    health = request(task="health_check_task", queue="default")
    rec.on_received(health)
    start(rec, health)
    rec.on_finished(health, "succeeded", None)
    assert (
        value(registry, "celery_task_received_total", queue="default", task="health_check_task")
        is None
    )


def test_a_failing_handler_never_raises() -> None:
    rec, _ = recorder()
    rec.on_started(object())  # no attributes at all


def test_exemplars_come_from_sampled_traceparents_only() -> None:
    assert sampled_trace_id({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}) == TRACE_ID
    assert sampled_trace_id({"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-00"}) is None
    assert sampled_trace_id({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}) is None
    assert sampled_trace_id({"traceparent": "garbage"}) is None


def test_runtime_exemplar_is_rendered_in_openmetrics() -> None:
    rec, registry = recorder()
    req = request(traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01")
    start(rec, req)
    rec.on_finished(req, "succeeded", None)
    assert f'# {{trace_id="{TRACE_ID}"}}' in generate_latest(registry).decode()


def test_queue_wait_subtracts_the_eta_delay() -> None:
    published = time.time() - 100
    req = request(**{"x-jobpilot-published-at": published})
    req.time_start = published + 70
    req.eta = datetime.datetime.fromtimestamp(published + 60, datetime.UTC)
    assert abs((queue_wait_seconds(req) or 0) - 10) < 1e-6
    assert queue_wait_seconds(request()) is None


def test_a_delivery_makes_no_labels_call(monkeypatch: Any) -> None:
    """Given a delivery that is received, started and succeeds, then no prometheus-client
    ``labels()`` lookup runs: the per-delivery series are plain numbers."""
    rec, registry = recorder()
    lookups: list[str] = []

    def counted(name: str, labels: Any) -> Any:
        def lookup(*values: str) -> Any:
            lookups.append(name)
            return labels(*values)

        return lookup

    for name, metric in vars(rec.metrics).items():
        if hasattr(metric, "labels"):
            monkeypatch.setattr(metric, "labels", counted(name, metric.labels))
    delivery = request(**{"x-jobpilot-published-at": time.time() - 1})
    delivery.time_start = time.time()
    rec.on_received(delivery)
    start(rec, delivery)
    rec.on_finished(delivery, "succeeded", None)
    assert lookups == []
    assert (
        value(registry, "celery_task_started_total", queue="briefings", task="briefing_compile")
        == 1
    )
    assert (
        value(
            registry,
            "celery_task_queue_wait_seconds_count",
            queue="briefings",
            task="briefing_compile",
        )
        == 1
    )
    assert value(registry, "celery_tasks_active", queue="briefings") == 0
    assert value(registry, "celery_tasks_reserved", queue="briefings") == 0


def test_a_delivery_looks_up_its_series_once(monkeypatch: Any) -> None:
    """Given a delivery that is received, started and finished, then its (queue, task)
    series is found once and reused by the later callbacks."""
    rec, registry = recorder()
    found: list[tuple[str, str]] = []
    series = rec.series

    def counted(queue: str, task: str) -> Any:
        found.append((queue, task))
        return series(queue, task)

    monkeypatch.setattr(rec, "series", counted)
    delivery = request()
    rec.on_received(delivery)
    start(rec, delivery)
    rec.on_finished(delivery, "succeeded", None)
    assert found == [("briefings", "briefing_compile")]
    assert succeeded(registry) == 1


@dataclass
class StandInTask:
    time_limit: float | None = None


def test_restored_messages_are_redelivered_and_long_etas_are_counted_once() -> None:
    registry = CollectorRegistry()
    rec = DeliveryRecorder(
        WorkerMetrics(registry),
        {"briefings"},
        lambda n: True,
        StartedWindow(3600, 100_000),
        EtaTrap(visibility_timeout=60, default_hard_limit=20),
    )
    far = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=50)
    near = far - datetime.timedelta(seconds=20)
    cases = [
        StandInRequest("b", {"routing_key": "briefings"}, {}, eta=far, task=StandInTask()),
        # The restored copy of the same message: redelivered, its ETA not counted again
        StandInRequest(
            "b", {"routing_key": "briefings", "redelivered": True}, {}, eta=far, task=StandInTask()
        ),
        # Within what the timeout allows with the app's 20 s limit
        StandInRequest("b", {"routing_key": "briefings"}, {}, eta=near, task=StandInTask()),
        # The task's own 5 s limit allows 55 s
        StandInRequest("b", {"routing_key": "briefings"}, {}, eta=far, task=StandInTask(5)),
        # A retry copies the redelivered header, never delivery_info: not a redelivery
        StandInRequest(
            "b", {"routing_key": "briefings"}, {"redelivered": True}, task=StandInTask()
        ),
    ]
    for req in cases:
        rec.on_received(req)
    labels = {"queue": "briefings", "task": "b"}
    assert value(registry, "celery_task_redelivered_total", **labels) == 1
    assert value(registry, "celery_task_eta_beyond_visibility_total", **labels) == 1
    assert value(registry, "celery_task_received_total", **labels) == 5


def test_a_second_start_of_the_same_id_and_retries_is_a_duplicate() -> None:
    rec, registry = recorder()
    for task_id, retries in (("a", 0), ("a", 1), ("a", 0), ("b", 0)):
        req = request(retries=retries)
        req.id = task_id
        rec.on_received(req)
        start(rec, req)
    labels = {"queue": "briefings", "task": "briefing_compile"}
    assert value(registry, "celery_task_duplicate_executions_total", **labels) == 1
    assert value(registry, "celery_task_started_total", **labels) == 4
