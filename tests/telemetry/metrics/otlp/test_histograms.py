"""Bucket counts into the SDK's histogram data, against the observed values themselves."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import AggregationTemporality, Histogram

from telemetry.metrics.otlp.histograms import HistogramBuilder, HistogramReading
from telemetry.metrics.otlp.names import PROCESS_DURATION
from telemetry.metrics.task_series import HistogramCounts

BOUNDS = (0.01, 0.1, 1.0)


def expected_buckets(values: list[float]) -> list[int]:
    """OTLP's explicit buckets, counted directly: (previous bound, bound], then above all."""
    lower = [float("-inf"), *BOUNDS]
    upper = [*BOUNDS, float("inf")]
    return [
        sum(1 for v in values if low < v <= high) for low, high in zip(lower, upper, strict=True)
    ]


def reading(counts: HistogramCounts) -> HistogramReading:
    return HistogramReading({"celery.task.name": "t"}, tuple(counts.counts), counts.total)


def test_a_cumulative_point_has_the_values_buckets_with_bounds_inclusive() -> None:
    values = [0.005, 0.01, 0.02, 0.1, 0.5, 1.0, 7.0]
    counts = HistogramCounts(BOUNDS)
    for value in values:
        counts.observe(value)
    build = HistogramBuilder(PROCESS_DURATION, BOUNDS, AggregationTemporality.CUMULATIVE, 100)
    metric = build([reading(counts)], 200)
    assert (metric.name, metric.unit) == ("messaging.process.duration", "s")
    assert isinstance(metric.data, Histogram)
    (point,) = metric.data.data_points
    assert list(point.bucket_counts) == expected_buckets(values) == [2, 2, 2, 1]
    assert point.count == len(values)
    assert point.sum == sum(values)
    assert list(point.explicit_bounds) == list(BOUNDS)
    assert (point.start_time_unix_nano, point.time_unix_nano) == (100, 200)
    assert build([reading(counts)], 300).data.data_points[0].start_time_unix_nano == 100


def test_delta_points_hold_what_came_since_the_last_collection_and_skip_no_change() -> None:
    counts = HistogramCounts(BOUNDS)
    build = HistogramBuilder(PROCESS_DURATION, BOUNDS, AggregationTemporality.DELTA, 100)
    assert build([reading(counts)], 200).data.data_points == []  # primed at zero
    first, second = [0.05, 2.0], [0.001, 0.05, 0.05]
    for value in first:
        counts.observe(value)
    (one,) = build([reading(counts)], 300).data.data_points
    for value in second:
        counts.observe(value)
    (two,) = build([reading(counts)], 400).data.data_points
    assert list(one.bucket_counts) == expected_buckets(first)
    assert list(two.bucket_counts) == expected_buckets(second)
    assert (one.count, two.count) == (2, 3)
    assert abs(two.sum - sum(second)) < 1e-9
    assert (one.start_time_unix_nano, one.time_unix_nano) == (200, 300)
    assert (two.start_time_unix_nano, two.time_unix_nano) == (300, 400)
    assert build([reading(counts)], 500).data.data_points == []
