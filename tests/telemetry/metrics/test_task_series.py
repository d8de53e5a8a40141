"""The plain-number task series render exactly as prometheus-client's own metrics would."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from telemetry.metrics.catalogue import OUTCOMES, RUNTIME_BUCKETS, TASK_FAMILIES
from telemetry.metrics.task_series import HeldReading, HistogramCounts, TaskSeriesCollector

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
#: Below, on and between bucket bounds, and past the last one.
OBSERVATIONS = (0.0001, 0.005, 0.0051, 0.3, 1, 4000.0)


def reference_registry() -> CollectorRegistry:
    """The same observations through prometheus-client's labelled metrics."""
    registry = CollectorRegistry()
    f = TASK_FAMILIES
    labels = ("queue", "task")
    received = Counter(f.received.name, f.received.documentation, labels, registry=registry)
    started = Counter(f.started.name, f.started.documentation, labels, registry=registry)
    finished = Counter(
        f.finished.name, f.finished.documentation, (*labels, "outcome"), registry=registry
    )
    runtime = Histogram(
        f.runtime.name, f.runtime.documentation, labels, buckets=RUNTIME_BUCKETS, registry=registry
    )
    wait = Histogram(
        f.queue_wait.name,
        f.queue_wait.documentation,
        labels,
        buckets=RUNTIME_BUCKETS,
        registry=registry,
    )
    active = Gauge(f.active.name, f.active.documentation, ("queue",), registry=registry)
    reserved = Gauge(f.reserved.name, f.reserved.documentation, ("queue",), registry=registry)
    redelivered = Counter(
        f.redelivered.name, f.redelivered.documentation, labels, registry=registry
    )
    duplicates = Counter(
        f.duplicate_executions.name,
        f.duplicate_executions.documentation,
        labels,
        registry=registry,
    )
    eta_beyond = Counter(
        f.eta_beyond_visibility.name,
        f.eta_beyond_visibility.documentation,
        labels,
        registry=registry,
    )
    eta_waiting = Gauge(
        f.eta_waiting.name, f.eta_waiting.documentation, ("queue",), registry=registry
    )
    oldest = Gauge(
        f.oldest_running.name, f.oldest_running.documentation, ("queue",), registry=registry
    )
    redelivered.labels("default", "t").inc(2)
    duplicates.labels("default", "t").inc(1)
    eta_beyond.labels("default", "t")
    eta_waiting.labels("default").set(3)
    oldest.labels("default").set(7.5)
    received.labels("default", "t").inc(6)
    started.labels("default", "t").inc(5)
    for outcome in OUTCOMES:
        finished.labels("default", "t", outcome).inc(outcome == "succeeded")
    for value in OBSERVATIONS:
        runtime.labels("default", "t").observe(value)
    wait.labels("default", "t")
    active.labels("default").set(1)
    reserved.labels("default").set(0)
    return registry


def test_the_exposition_equals_prometheus_clients_own() -> None:
    """Given the same deliveries recorded both ways, then the text exposition is identical."""
    registry = CollectorRegistry()
    collector = TaskSeriesCollector(
        TASK_FAMILIES, registry, held=lambda: HeldReading({"default": 3}, {"default": 7.5})
    )
    series = collector.series("default", "t")
    series.redelivered += 2
    series.duplicates += 1
    series.received += 6
    series.started += 5
    series.finished["succeeded"] += 1
    series.gauges.active += 1
    for value in OBSERVATIONS:
        series.runtime.observe(value)
    ours = generate_latest(registry).decode()
    theirs = generate_latest(reference_registry()).decode()
    assert sorted(line for line in ours.splitlines() if "_created" not in line) == sorted(
        line for line in theirs.splitlines() if "_created" not in line
    )


def test_a_value_on_a_bound_falls_in_that_bucket() -> None:
    counts = HistogramCounts((0.1, 1.0))
    counts.observe(0.1)
    counts.observe(1.0)
    counts.observe(1.5)
    assert [(le, n) for le, n, *_ in counts.cumulative()] == [("0.1", 1), ("1.0", 2), ("+Inf", 3)]


def test_exemplars_render_in_openmetrics_on_their_bucket() -> None:
    registry = CollectorRegistry()
    series = TaskSeriesCollector(TASK_FAMILIES, registry).series("default", "t")
    series.runtime.observe(0.02, TRACE_ID)
    text = openmetrics_latest(registry).decode()
    bucket = next(line for line in text.splitlines() if f'trace_id="{TRACE_ID}"' in line)
    assert bucket.startswith('celery_task_runtime_seconds_bucket{le="0.025",queue="default"')


def test_a_family_name_registers_once() -> None:
    registry = CollectorRegistry()
    TaskSeriesCollector(TASK_FAMILIES, registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("celery_task_received", "again", registry=registry)


def test_every_scrape_during_recording_is_self_consistent() -> None:
    """Given one thread recording while another scrapes, then each scraped histogram's
    ``_count`` equals its ``+Inf`` bucket, and counters never go backwards."""
    registry = CollectorRegistry()
    series = TaskSeriesCollector(TASK_FAMILIES, registry).series("default", "t")
    done = threading.Event()

    def record() -> None:
        for i in range(50_000):
            series.received += 1
            series.runtime.observe((i % 100) / 10)
        done.set()

    writer = threading.Thread(target=record)
    writer.start()
    last_received = 0.0
    while not done.is_set():
        samples = {
            (s.name, s.labels.get("le")): s.value
            for family in registry.collect()
            for s in family.samples
        }
        assert (
            samples[("celery_task_runtime_seconds_count", None)]
            == samples[("celery_task_runtime_seconds_bucket", "+Inf")]
        )
        assert samples[("celery_task_received_total", None)] >= last_received
        last_received = samples[("celery_task_received_total", None)]
    writer.join()
