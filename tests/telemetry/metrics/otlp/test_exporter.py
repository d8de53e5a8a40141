"""The export in-process, through the SDK's OTLP exporter to a real receiver: cumulative, delta, down."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry

from telemetry.metrics.at_least_once import StartedWindow
from telemetry.metrics.catalogue import WorkerMetrics
from telemetry.metrics.otlp.environment import export_config
from telemetry.metrics.otlp.exporter import STOP_TIMEOUT_SECONDS, MetricExport
from telemetry.metrics.otlp.readings import WorkerReadings
from telemetry.metrics.recorder import DeliveryRecorder
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.worker_process import free_port
from tests.telemetry.metrics.test_recorder import request, start


class Workload:
    """A recorder fed stand-in deliveries, and the registry behind its /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.recorder = DeliveryRecorder(
            WorkerMetrics(self.registry), {"briefings"}, lambda _: True, StartedWindow(3600, 100)
        )
        self.recorder.series("briefings", "briefing_compile")
        self.recorder.metrics.broker.queue_depth.labels("briefings").set(7)
        self.readings = WorkerReadings(
            self.recorder.metrics, self.recorder.failed_runtimes, "redis", polls_queues=True
        )

    def deliver(self, outcome: str, exception: BaseException | None = None) -> None:
        delivery = request()
        self.recorder.on_received(delivery)
        start(self.recorder, delivery)
        self.recorder.on_finished(delivery, outcome, exception)

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        assert found is not None, name
        return found


def export_to(endpoint: str, monkeypatch: pytest.MonkeyPatch, workload: Workload) -> MetricExport:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    config = export_config()
    assert config is not None
    return MetricExport(config, Resource.create({"service.name": "test"}), workload.readings)


@pytest.fixture
def workload() -> Workload:
    return Workload()


TASK = {"messaging.destination.name": "briefings", "celery.task.name": "briefing_compile"}


def finished(point_attributes: dict[str, object], outcome: str) -> bool:
    return point_attributes.get("celery.task.outcome") == outcome


def test_cumulative_points_are_the_registry_values(
    monkeypatch: pytest.MonkeyPatch, workload: Workload, receiver: OtlpReceiver
) -> None:
    export = export_to(receiver.endpoint, monkeypatch, workload)
    for outcome in ("succeeded", "succeeded", "failed"):
        workload.deliver(outcome, ValueError())
    assert export.export()
    workload.deliver("succeeded")
    assert export.export()
    assert receiver.metric_requests == 2
    latest = {
        p.attributes.get("celery.task.outcome"): p.value
        for p in receiver.latest("celery.task.finished").values()
    }
    assert latest["succeeded"] == workload.value("celery_task_finished_total", **TASK_LABELS, outcome="succeeded") == 3  # fmt: skip
    assert latest["failed"] == 1
    (consumed,) = receiver.latest("messaging.client.consumed.messages").values()
    assert consumed.value == workload.value("celery_task_received_total", **TASK_LABELS) == 4
    (depth,) = receiver.latest("celery.queue.depth").values()
    assert depth.value == 7
    durations = {
        p.attributes.get("error.type"): p.count
        for p in receiver.latest("messaging.process.duration").values()
    }
    assert durations == {None: 3, "ValueError": 1}
    assert workload.value("celery_task_runtime_seconds_count", **TASK_LABELS) == 4
    assert {p.temporality for p in receiver.metric_points("celery.task.finished")} == {
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    }
    assert receiver.refused == []


TASK_LABELS = {"queue": "briefings", "task": "briefing_compile"}


def test_delta_points_add_up_to_the_registry_values(
    monkeypatch: pytest.MonkeyPatch, workload: Workload, receiver: OtlpReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    export = export_to(receiver.endpoint, monkeypatch, workload)
    for batch in (("succeeded", "failed"), (), ("succeeded", "succeeded", "failed")):
        for outcome in batch:
            workload.deliver(outcome, KeyError())
        assert export.export()
    succeeded = sum(
        p.value
        for p in receiver.metric_points("celery.task.finished")
        if finished(p.attributes, "succeeded")
    )
    assert succeeded == workload.value("celery_task_finished_total", **TASK_LABELS, outcome="succeeded") == 3  # fmt: skip
    durations = receiver.metric_points("messaging.process.duration")
    assert {p.temporality for p in durations} == {"AGGREGATION_TEMPORALITY_DELTA"}
    assert sum(p.count for p in durations) == 5
    assert sum(p.count for p in durations if p.attributes.get("error.type") == "KeyError") == 2
    # The empty interval sent no histogram point, and each point starts where the last ended
    assert len({p.time_unix_nano for p in durations}) == 2
    first, last = sorted({(p.start_time_unix_nano, p.time_unix_nano) for p in durations})
    assert last[0] > first[1]
    assert receiver.refused == []


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A collector that takes connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_a_dead_collector_costs_one_quiet_line_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, workload: Workload, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "0.3")
    export = export_to(f"http://127.0.0.1:{free_port()}", monkeypatch, workload)
    export.start()  # its filter quiets the SDK exporter's own lines
    with caplog.at_level(logging.WARNING):
        results = [export.export() for _ in range(3)]
    export.stop()
    assert results == [False, False, False]
    ours = [r for r in caplog.records if r.name == "telemetry.metrics.otlp"]
    assert [r.getMessage().split(" (")[0] for r in ours] == ["metric export failed"]
    assert len([r for r in caplog.records if r.name.startswith("opentelemetry")]) <= 1


def test_stop_is_bounded_when_the_collector_hangs(
    monkeypatch: pytest.MonkeyPatch, workload: Workload, silent_endpoint: str
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "50")
    export = export_to(silent_endpoint, monkeypatch, workload)
    export.start()
    time.sleep(0.2)  # the first export is waiting on the silent collector
    started = time.monotonic()
    export.stop()
    assert time.monotonic() - started < STOP_TIMEOUT_SECONDS + 0.5
