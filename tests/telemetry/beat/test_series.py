"""Per-entry series: at zero from the start, following entries that come and go, capped."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from celery import Celery
from celery.beat import ScheduleEntry
from prometheus_client import CollectorRegistry

from telemetry.beat.schedules import SendPlan
from telemetry.beat.series import OTHER_ENTRY, EntrySeries
from telemetry.metrics.beat_catalogue import BeatMetrics

NOW = 1_800_000_000.0


@pytest.fixture
def app() -> Celery:
    return Celery("unit", set_as_current=False)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def book(registry: CollectorRegistry, max_entries: int = 500) -> EntrySeries:
    return EntrySeries(BeatMetrics(registry), max_entries, lambda entry: f"q-{entry.task}")


def entry(app: Celery, name: str, task: str = "t", every: float = 10) -> ScheduleEntry:
    return ScheduleEntry(name=name, task=task, schedule=every, app=app)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_every_entry_starts_at_zero(app: Celery, registry: CollectorRegistry) -> None:
    series = book(registry)
    series.sync({"a": entry(app, "a"), "b": entry(app, "b", "u", 60)}, NOW)
    assert value(registry, "celery_beat_entry_sent_total", entry="b", task="u", queue="q-u") == 0
    assert value(registry, "celery_beat_entry_send_errors_total", entry="a", task="t") == 0
    for name in ("catchup", "missed"):
        assert value(registry, f"celery_beat_entry_{name}_total", entry="a") == 0
    assert value(registry, "celery_beat_entry_lateness_seconds_count", entry="a") == 0
    assert value(registry, "celery_beat_entry_interval_seconds", entry="b") == 60
    # A new entry has never been sent: no last-sent time yet
    assert value(registry, "celery_beat_entry_last_sent_timestamp_seconds", entry="a") is None


def test_a_send_is_counted_and_observed_unless_it_is_the_catchup(
    app: Celery, registry: CollectorRegistry
) -> None:
    series = book(registry)
    a = entry(app, "a")
    series.sync({"a": a}, NOW)
    series.sent(a, SendPlan(NOW - 0.5), NOW, NOW + 10, 10)
    series.sent(a, SendPlan(NOW - 40, missed=3, catchup=True), NOW + 1, NOW + 11, 10)
    assert value(registry, "celery_beat_entry_sent_total", entry="a", task="t", queue="q-t") == 2
    assert value(registry, "celery_beat_entry_lateness_seconds_count", entry="a") == 1
    assert value(registry, "celery_beat_entry_lateness_seconds_sum", entry="a") == 0.5
    assert value(registry, "celery_beat_entry_catchup_total", entry="a") == 1
    assert value(registry, "celery_beat_entry_missed_total", entry="a") == 3
    assert value(registry, "celery_beat_entry_last_sent_timestamp_seconds", entry="a") == NOW + 1
    assert value(registry, "celery_beat_entry_next_due_timestamp_seconds", entry="a") == NOW + 11
    series.failed(a, SendPlan(NOW + 10, missed=1), NOW + 12, NOW + 22, 10)
    assert value(registry, "celery_beat_entry_send_errors_total", entry="a", task="t") == 1
    assert value(registry, "celery_beat_entry_missed_total", entry="a") == 4


def test_added_entries_get_series_and_removed_ones_lose_them(
    app: Celery, registry: CollectorRegistry
) -> None:
    series = book(registry)
    series.sync({"a": entry(app, "a")}, NOW)
    series.sync({"b": entry(app, "b")}, NOW, known_too=False)
    assert value(registry, "celery_beat_entry_missed_total", entry="b") == 0
    for family in ("celery_beat_entry_missed_total", "celery_beat_entry_interval_seconds"):
        assert value(registry, family, entry="a") is None
    assert value(registry, "celery_beat_entry_sent_total", entry="a", task="t", queue="q-t") is None


def test_an_edited_task_starts_new_series_for_its_new_labels(
    app: Celery, registry: CollectorRegistry
) -> None:
    series = book(registry)
    series.sync({"a": entry(app, "a", "t")}, NOW)
    series.sync({"a": entry(app, "a", "u")}, NOW)
    assert value(registry, "celery_beat_entry_sent_total", entry="a", task="t", queue="q-t") is None
    assert value(registry, "celery_beat_entry_sent_total", entry="a", task="u", queue="q-u") == 0


def test_past_the_cap_entries_count_as_other_logged_once(
    app: Celery, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    series = book(registry, max_entries=2)
    entries: dict[str, Any] = {name: entry(app, name) for name in ("a", "b", "c", "d")}
    with caplog.at_level(logging.WARNING, logger="telemetry.beat"):
        series.sync(entries, NOW)
        series.sent(entries["d"], SendPlan(NOW), NOW, NOW + 10, 10)
    assert series.names == {"a", "b"}
    assert (
        value(registry, "celery_beat_entry_sent_total", entry=OTHER_ENTRY, task="t", queue="q-t")
        == 1
    )
    assert value(registry, "celery_beat_entry_interval_seconds", entry=OTHER_ENTRY) is None
    assert len([r for r in caplog.records if "BEAT_MAX_ENTRIES" in r.getMessage()]) == 1
    # A removed entry frees its place for the next one
    series.sync({"b": entries["b"], "c": entries["c"], "d": entries["d"]}, NOW)
    assert series.names == {"b", "c"}
