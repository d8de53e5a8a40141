"""The duplicate window, the ETA trap, the publish-time countdown check and the held-request reader."""

from __future__ import annotations

import datetime
import logging
import tracemalloc
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery

from telemetry.metrics.at_least_once import (
    CountdownCheck,
    EtaTrap,
    KeyedLogThrottle,
    StartedWindow,
)
from telemetry.metrics.held import HeldRequests
from telemetry.wiring.producer import PublishHooks


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_pair_started_again_within_the_window_is_a_duplicate_and_retries_are_not() -> None:
    clock = Clock()
    window = StartedWindow(60, 100, clock)
    assert [window.seen("a", retries) for retries in range(4)] == [False] * 4
    assert window.seen("a", 2) is True
    clock.now += 61
    assert window.seen("a", 2) is False  # the earlier start has left the window
    assert len(window) == 1  # and every expired pair with it


def test_past_the_maximum_the_oldest_pairs_are_forgotten_first() -> None:
    window = StartedWindow(3600, 3, Clock())
    for task_id in "abcd":
        window.seen(task_id, 0)
    assert len(window) == 3
    assert window.seen("d", 0) is True
    assert window.seen("a", 0) is False  # evicted by "d"


def test_a_duplicate_moves_to_the_back_of_the_window() -> None:
    clock = Clock()
    window = StartedWindow(60, 100, clock)
    window.seen("a", 0)
    clock.now += 50
    window.seen("b", 0)
    window.seen("a", 0)  # started again at t=50: kept until t=110
    clock.now += 20
    assert window.seen("a", 0) is True


def test_the_default_window_holds_100k_pairs_in_bounded_memory() -> None:
    tracemalloc.start()
    window = StartedWindow(3600, 100_000)
    before = tracemalloc.get_traced_memory()[0]
    for n in range(120_000):
        window.seen(f"{n:08x}-0000-4000-8000-000000000000", 0)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(window) == 100_000
    assert used < 32 * 2**20, f"{used / 2**20:.1f} MiB"


def test_keyed_throttle_is_per_key_and_per_interval() -> None:
    clock = Clock()
    throttle = KeyedLogThrottle(3600, 2, clock)
    assert [throttle.due("a"), throttle.due("a"), throttle.due("b")] == [True, False, True]
    clock.now += 3600
    assert throttle.due("a") is True
    throttle.due("c")  # three keys: the oldest, "b", is forgotten
    assert throttle.due("b") is True


def eta_in(seconds: float, now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now + seconds, tz=datetime.UTC)


def test_an_eta_beyond_the_timeout_less_the_hard_limit_is_named_once_per_hour(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock(1_000_000.0)
    trap = EtaTrap(visibility_timeout=3600, default_hard_limit=360, clock=clock)
    # The app's hard limit applies: 3600 - 360 = 3240 s are allowed
    assert trap.beyond("t", eta_in(3200, clock.now), None) is None
    with caplog.at_level(logging.WARNING, "telemetry.metrics"):
        assert trap.beyond("t", eta_in(3300, clock.now), None) == pytest.approx(60)
        assert trap.beyond("t", eta_in(3300, clock.now), None) == pytest.approx(60)
    # The request's own hard limit wins over the app's
    assert trap.beyond("t", eta_in(3300, clock.now), 100) is None
    assert [r.getMessage() for r in caplog.records] == [
        "task t has an ETA 3300 s away, 60 s beyond what the visibility timeout (3600 s) "
        "allows with a 360 s hard time limit: the broker will restore the message while it "
        "waits and another worker will run it too"
    ]


def test_a_countdown_beyond_the_visibility_timeout_is_logged_at_publish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Celery("publisher", broker="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.broker_transport_options = {"visibility_timeout": 60}
    hooks = PublishHooks()
    hooks.configured = True  # counting and spans are not what this test is about
    hooks.apps[id(app)] = (app, None)  # type: ignore[assignment]
    now = datetime.datetime.now(datetime.UTC)
    with caplog.at_level(logging.WARNING, "telemetry.metrics"):
        for seconds in (30, 90, 90):
            eta = (now + datetime.timedelta(seconds=seconds)).isoformat()
            hooks.on_before_task_publish(sender="report", headers={"eta": eta, "id": "x"})
        hooks.on_before_task_publish(sender="report", headers={"eta": "not a time", "id": "y"})
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("task report published with an ETA 9")
    assert "beyond the broker's visibility timeout (60 s)" in lines[0]


def test_the_countdown_check_accepts_naive_and_aware_times() -> None:
    check = CountdownCheck(60, clock=Clock(0.0))
    assert check.check("t", "1970-01-01T00:02:00") is True
    assert check.check("t", "1970-01-01T00:00:30+00:00") is False
    assert check.check("t", None) is False


@dataclass
class Series:
    queue: str


@dataclass
class Held:
    metrics_series: Any
    eta: datetime.datetime | None = None
    started_at: float | None = None


def test_held_requests_by_queue_leave_out_past_etas_and_health_checks() -> None:
    wall, mono = Clock(1_000.0), Clock(50.0)
    default, other = Series("default"), Series("other")
    scheduled = [
        Held(default, eta_in(10, wall.now)),
        Held(default, eta_in(20, wall.now)),
        Held(other, eta_in(-1, wall.now)),  # its ETA passed: about to run, not waiting
        Held(None, eta_in(10, wall.now)),  # a health check: no series
    ]
    active = [
        Held(default, started_at=45.0),
        Held(default, started_at=30.0),
        Held(other, started_at=None),  # not accepted by the pool yet
        Held(None, started_at=0.0),
    ]
    reading = HeldRequests(scheduled, active, wall, mono)()
    assert reading.eta_waiting == {"default": 2}
    assert reading.oldest_running == {"default": 20.0}


def test_a_set_that_keeps_changing_reads_as_empty() -> None:
    class Changing:
        def __iter__(self) -> Any:
            raise RuntimeError("Set changed size during iteration")

    reading = HeldRequests(Changing(), Changing())()
    assert reading.eta_waiting == {} and reading.oldest_running == {}
