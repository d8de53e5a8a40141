"""Observer dispatch: every observer hears of every event, whatever another one does."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from telemetry.delivery.observers import SUCCEEDED, DeliveryObserver, Observers


class Recording(DeliveryObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_received(self, request: Any) -> None:
        self.events.append(("received", request))

    def on_started(self, request: Any) -> None:
        self.events.append(("started", request))

    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        self.events.append(("finished", outcome))

    def on_dead_lettered(self, queue: str, task: str | None, reason: str, refused: bool) -> None:
        self.events.append(("dead_lettered", reason))


class Broken(DeliveryObserver):
    def on_received(self, request: Any) -> None:
        raise RuntimeError("observer bug")

    on_started = on_received

    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        raise KeyError("observer bug")

    def on_dead_lettered(self, queue: str, task: str | None, reason: str, refused: bool) -> None:
        raise ValueError("observer bug")


def test_a_failing_observer_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """Given a broken observer registered before a working one, when every event is
    dispatched, then the working one hears all four and one warning names the broken one."""
    observers, working = Observers(), Recording()
    observers.add(Broken())
    observers.add(working)
    with caplog.at_level(logging.WARNING, logger="telemetry.delivery"):
        observers.received("r")
        observers.started("r")
        observers.finished("r", SUCCEEDED, None)
        observers.dead_lettered("default", "t", "bad_json", True)
    assert working.events == [
        ("received", "r"),
        ("started", "r"),
        ("finished", SUCCEEDED),
        ("dead_lettered", "bad_json"),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Broken" in warnings[0] and "RuntimeError" in warnings[0]


def test_the_base_observer_ignores_every_event() -> None:
    observers = Observers()
    observers.add(DeliveryObserver())
    observers.received(object())
    observers.finished(object(), SUCCEEDED, None)
    observers.dead_lettered("default", None, "bad_json", True)


def test_an_observer_is_registered_once_and_removed() -> None:
    observers, working = Observers(), Recording()
    observers.add(working)
    observers.add(working)
    observers.received("r")
    assert working.events == [("received", "r")]
    observers.remove(working)
    observers.remove(working)
    observers.received("r")
    assert working not in observers and working.events == [("received", "r")]
