"""Deliveries Celery forgets on a lost connection end as requeued, before it forgets them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.worker import request as celery_request
from celery.worker import state as worker_state

from telemetry.delivery.dropped import DroppedRequests
from telemetry.delivery.observers import OBSERVERS, REQUEUED, SUCCEEDED, DeliveryObserver
from telemetry.delivery.request import TelemetryRequest


class Recording(DeliveryObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []

    def on_received(self, request: Any) -> None:
        pass

    def on_started(self, request: Any) -> None:
        self.events.append(("started", request.metrics_series, None))

    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        self.events.append(("finished", request.metrics_series, outcome))

    def on_dead_lettered(self, queue: str, task: str | None, reason: str, refused: bool) -> None:
        pass


class Consumer:
    """Celery's ``Consumer.on_close`` as far as the requests go: the reserved ones not
    executing, and the scheduled ones, are forgotten."""

    def __init__(self) -> None:
        self.seen_at_close: list[list[tuple[str, str, str | None]]] = []
        self.recording: Recording | None = None

    def on_close(self) -> None:
        assert self.recording is not None
        self.seen_at_close.append(list(self.recording.events))
        active = set(worker_state.active_requests)
        worker_state.reserved_requests.intersection_update(active)
        worker_state.scheduled_requests.clear()


def request(name: str) -> TelemetryRequest:
    built = TelemetryRequest.__new__(TelemetryRequest)
    built.metrics_series = name  # where an observer keeps its own: here, a name
    return built


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recording]:
    monkeypatch.setattr(worker_state, "reserved_requests", set())
    monkeypatch.setattr(worker_state, "active_requests", set())
    monkeypatch.setattr(worker_state, "scheduled_requests", set())
    observer = Recording()
    OBSERVERS.add(observer)
    yield observer
    OBSERVERS.remove(observer)


def test_the_forgotten_end_as_requeued_before_celery_forgets_them(recording: Recording) -> None:
    """Given a reserved, a scheduled, an executing and an already ended request, when the
    consumer closes, then exactly the reserved and the scheduled end as requeued, before
    Celery's own on_close runs; after stop the consumer's own on_close is back."""
    reserved, scheduled, executing, ended = (
        request(name) for name in ("reserved", "scheduled", "executing", "ended")
    )
    ended._finish(SUCCEEDED, None)
    recording.events.clear()
    worker_state.reserved_requests.update({reserved, executing, ended})
    worker_state.active_requests.update({executing})
    worker_state.scheduled_requests.update({scheduled})
    consumer = Consumer()
    consumer.recording = recording
    dropped = DroppedRequests()
    dropped.ready(consumer)

    consumer.on_close()

    assert sorted(consumer.seen_at_close[0]) == [
        ("finished", "reserved", REQUEUED),
        ("finished", "scheduled", REQUEUED),
    ]
    assert executing.outcome is None
    assert worker_state.reserved_requests == {executing}

    dropped.stop()
    assert "on_close" not in consumer.__dict__
    consumer.on_close()
    assert consumer.seen_at_close[1] == consumer.seen_at_close[0]  # nothing more ended


def test_a_forgotten_job_the_pool_accepts_after_all_does_not_start_again(
    recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a request ended as requeued on a connection loss, when the pool accepts its
    job all the same and it succeeds, then it neither starts nor ends a second time."""
    monkeypatch.setattr(celery_request.Request, "on_accepted", lambda self, pid, at: None)
    forgotten, fresh = request("forgotten"), request("fresh")
    forgotten.forgotten()
    forgotten.on_accepted(1, 0.0)
    forgotten._finish(SUCCEEDED, None)
    fresh.on_accepted(1, 0.0)

    assert recording.events == [
        ("finished", "forgotten", REQUEUED),
        ("started", "fresh", None),
    ]
    assert forgotten.outcome == REQUEUED
    assert forgotten.started_at is None


def test_a_consumer_without_on_close_is_left_as_it_is() -> None:
    dropped = DroppedRequests()
    dropped.ready(object())
    dropped.stop()


def test_celery_5_6_forgets_the_reserved_ones_only(
    recording: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given Celery 5.6's state (no scheduled set: its ETA requests stay in the timer and
    run later), when the consumer closes, then the reserved one ends as requeued."""
    monkeypatch.delattr(worker_state, "scheduled_requests")
    reserved = request("reserved")
    worker_state.reserved_requests.add(reserved)
    consumer = Consumer()
    consumer.recording = recording
    own = consumer.on_close = lambda: None  # type: ignore[method-assign]
    dropped = DroppedRequests()
    dropped.ready(consumer)

    consumer.on_close()

    assert recording.events == [("finished", "reserved", REQUEUED)]
    dropped.stop()
    assert consumer.on_close is own
