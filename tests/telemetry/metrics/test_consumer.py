"""Reading Celery's request state from the threads that serve /metrics and probe readiness."""

from __future__ import annotations

import weakref
from typing import Any

import pytest

from telemetry.messages import HEALTH_TASK
from telemetry.metrics.consumer import BUSY_READ_ATTEMPTS, busy_requests


class Request:
    def __init__(self, task: str) -> None:
        self.task = task
        self.on_read: Any = None

    @property
    def type(self) -> str:
        if self.on_read is not None:
            on_read, self.on_read = self.on_read, None
            on_read()
        return self.task


def test_health_checks_are_not_busy_pool_processes() -> None:
    held = [Request("bench_noop"), Request("agent_plan"), Request(HEALTH_TASK)]
    assert busy_requests(weakref.WeakSet(held)) == 2


def test_a_request_started_while_reading_is_read_again() -> None:
    """Given the main thread starts a request while another thread counts the active
    ones, then the count is read again instead of failing the scrape."""
    held = [Request("bench_noop"), Request("agent_plan")]
    active: weakref.WeakSet[Request] = weakref.WeakSet(held)
    started = Request("scrape_page")
    held.append(started)
    for request in held[:2]:
        request.on_read = lambda: active.add(started)
    assert busy_requests(active) == 3


def test_a_set_that_never_settles_still_fails_loudly() -> None:
    held: list[Request] = []
    active: weakref.WeakSet[Request] = weakref.WeakSet()

    def start_another() -> None:
        request = Request("bench_noop")
        request.on_read = start_another
        held.append(request)
        active.add(request)

    start_another()
    with pytest.raises(RuntimeError):
        busy_requests(active)
    assert len(held) > BUSY_READ_ATTEMPTS
