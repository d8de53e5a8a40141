"""The requests waiting for their ETA: Celery 5.7's own set, or Celery 5.6's timer queue."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from celery.worker import state as worker_state
from kombu.asynchronous.timer import Timer

from telemetry.delivery.request import TelemetryRequest
from telemetry.metrics import held
from telemetry.metrics.held import HeldRequests, TimerScheduled, scheduled_requests


@dataclass
class Series:
    queue: str


def waiting_request(queue: str, eta: datetime.datetime) -> TelemetryRequest:
    """A Celery Request as the strategy enters it in the timer (built without a message)."""
    request = TelemetryRequest.__new__(TelemetryRequest)
    request.metrics_series = Series(queue)
    request._eta = eta  # Request.eta reads it
    return request


def test_celery_5_7_keeps_the_set_itself() -> None:
    assert (
        scheduled_requests(lambda: SimpleNamespace(timer=None)) is worker_state.scheduled_requests
    )


def test_celery_5_6_waiting_requests_are_read_from_the_workers_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given Celery 5.6's state (no scheduled_requests) and a worker whose timer holds two
    ETA requests and unrelated entries, then exactly the requests are read, by queue."""
    monkeypatch.delattr(held.worker_state, "scheduled_requests")
    now = datetime.datetime.now(datetime.UTC)
    timer = Timer()
    later = now + datetime.timedelta(minutes=10)
    first, second = waiting_request("orders", later), waiting_request("invoices", later)
    timer.call_at(later, lambda request: None, (first,))
    timer.call_at(later + datetime.timedelta(minutes=1), lambda request: None, (second,))
    timer.call_repeatedly(1.0, lambda: None)  # the liveness tick: no request
    timer.call_at(later, lambda name: None, ("not a request",))
    worker = SimpleNamespace(timer=timer)

    scheduled = scheduled_requests(lambda: worker)
    assert isinstance(scheduled, TimerScheduled)
    assert list(scheduled) == [first, second]
    # The timer is read again at each render
    timer.call_at(later, lambda request: None, (waiting_request("orders", later),))
    reading = HeldRequests(scheduled, [], wall_clock=now.timestamp)()
    assert reading.eta_waiting == {"orders": 2, "invoices": 1}


def test_before_the_worker_starts_nothing_is_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(held.worker_state, "scheduled_requests")
    assert list(scheduled_requests(lambda: None)) == []
    assert list(scheduled_requests(lambda: SimpleNamespace())) == []
