"""The failed runtimes by error type: names, bounds, and reads as of one moment."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from telemetry.metrics.at_least_once import StartedWindow
from telemetry.metrics.catalogue import RUNTIME_BUCKETS, WorkerMetrics
from telemetry.metrics.failed_runtimes import FailedRuntimes, error_type
from telemetry.metrics.otlp.readings import WorkerReadings
from telemetry.metrics.recorder import DeliveryRecorder
from telemetry.metrics.task_series import HistogramCounts
from tests.telemetry.metrics.test_recorder import request, start


class Outer:
    class Nested(Exception):
        pass


class Custom(Exception):
    pass


def test_error_type_is_the_fully_qualified_class_with_builtins_bare() -> None:
    assert error_type(ValueError("x")) == "ValueError"
    assert error_type(Custom()) == f"{__name__}.Custom"
    assert error_type(Outer.Nested()) == f"{__name__}.Outer.Nested"
    assert error_type(None) == "_OTHER"


def test_failures_past_the_limit_share_other() -> None:
    failed = FailedRuntimes((1.0,), limit=2)
    runtime = HistogramCounts((1.0,))
    for error in ("A", "B", "C", "D"):
        failed.record(runtime, "q", "t", error, 0.5)
    counts = {key: sum(value.counts) for key, value in failed.items()}
    assert counts == {("q", "t", "A"): 1, ("q", "t", "B"): 1, ("q", "t", "_OTHER"): 2}
    assert sum(runtime.counts) == 4


def recorder() -> DeliveryRecorder:
    return DeliveryRecorder(
        WorkerMetrics(CollectorRegistry()),
        {"briefings"},
        lambda _: True,
        StartedWindow(3600, 100_000),
    )


def test_a_failed_run_is_in_the_runtime_histogram_and_under_its_class() -> None:
    rec = recorder()
    for outcome, exception in (("failed", Custom()), ("succeeded", None), ("failed", None)):
        delivery = request()
        rec.on_received(delivery)
        start(rec, delivery)
        rec.on_finished(delivery, outcome, exception)
    never_started = request()
    rec.on_received(never_started)
    rec.on_finished(never_started, "failed", Custom())
    series = rec.metrics.tasks.series("briefings", "briefing_compile")
    assert sum(series.runtime.counts) == 3
    by_error = {key: sum(counts.counts) for key, counts in rec.failed_runtimes.items()}
    assert by_error == {
        ("briefings", "briefing_compile", f"{__name__}.Custom"): 1,
        ("briefings", "briefing_compile", "_OTHER"): 1,
    }
    assert rec.failed_runtimes.bounds == RUNTIME_BUCKETS


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """Threads switch every microsecond, so a read lands between two writes often."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_no_count_ever_goes_down_while_failures_are_recorded(frequent_switches: None) -> None:
    # Given a recorder taking failures and successes on one thread
    rec = recorder()
    readings = WorkerReadings(rec.metrics, rec.failed_runtimes, "redis", polls_queues=False)
    done = threading.Event()

    def deliver() -> None:
        for n in range(3000):
            delivery = request()
            rec.on_received(delivery)
            start(rec, delivery)
            rec.on_finished(delivery, "failed" if n % 2 else "succeeded", Custom())
        done.set()

    writer = threading.Thread(target=deliver)
    writer.start()
    # When another thread derives the process durations throughout
    last: dict[frozenset[tuple[str, str]], int] = {}
    decreases = reads = 0
    while not done.is_set() or reads == 0:
        points = readings._process_durations()
        assert points is not None
        reads += 1
        for point in points:
            key = frozenset(point.attributes.items())
            count = sum(point.counts)
            decreases += count < last.get(key, 0)
            last[key] = count
    writer.join()
    # Then no count went down between reads (a backend would take it for a reset)
    assert reads > 10
    assert decreases == 0
    final = readings._process_durations()
    assert final is not None
    assert sorted(sum(p.counts) for p in final) == [1500, 1500]
