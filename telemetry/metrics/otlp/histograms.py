"""The worker's bucket counts as the SDK's histogram data, cumulative or delta.

    build = HistogramBuilder(PROCESS_DURATION, RUNTIME_BUCKETS, temporality, start_ns)
    metric = build([HistogramReading(attributes, counts, total), ...], now_ns)

The worker keeps each histogram as per-bucket counts with ``le`` bounds
(``telemetry.metrics.task_series.HistogramCounts``), which is what OTLP's explicit
buckets are: ``bucket_counts[i]`` counts the values in ``(bounds[i-1], bounds[i]]``
and the last one those above every bound. Cumulative points start when the
series did; a delta point is the difference from the previous collection, whose
values this builder keeps (one list per attribute set), and a set that did not
change since is left out, as the SDK leaves out a histogram that saw no
measurement. Neither ``min`` nor ``max`` is known from buckets: both are left
unset, which OTLP allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
)
from opentelemetry.util.types import Attributes

from telemetry.metrics.otlp.names import Instrument

AttributeKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class HistogramReading:
    """One attribute set's per-bucket counts (``len(bounds) + 1`` of them) and sum."""

    attributes: dict[str, str]
    counts: tuple[int, ...]
    total: float

    def minus(self, other: HistogramReading) -> HistogramReading:
        return HistogramReading(
            self.attributes,
            tuple(a - b for a, b in zip(self.counts, other.counts, strict=True)),
            self.total - other.total,
        )


class HistogramBuilder:
    """Builds one histogram metric per collection from the readings of its series."""

    def __init__(
        self,
        instrument: Instrument,
        bounds: tuple[float, ...],
        temporality: AggregationTemporality,
        start_ns: int,
    ) -> None:
        self.instrument = instrument
        self.bounds = bounds
        self.temporality = temporality
        self.start_ns = start_ns
        self._previous: dict[AttributeKey, HistogramReading] = {}
        self._previous_ns = start_ns

    def __call__(self, readings: Sequence[HistogramReading], now_ns: int) -> Metric:
        if self.temporality is AggregationTemporality.DELTA:
            points = self._delta(readings, now_ns)
        else:
            points = [self._point(reading, self.start_ns, now_ns) for reading in readings]
        return Metric(
            name=self.instrument.name,
            description=self.instrument.description,
            unit=self.instrument.unit,
            data=Histogram(data_points=points, aggregation_temporality=self.temporality),
        )

    def _delta(self, readings: Sequence[HistogramReading], now_ns: int) -> list[HistogramDataPoint]:
        points = []
        start_ns, self._previous_ns = self._previous_ns, now_ns
        for reading in readings:
            key = tuple(sorted(reading.attributes.items()))
            previous = self._previous.get(key)
            self._previous[key] = reading
            change = reading if previous is None else reading.minus(previous)
            if any(change.counts):
                points.append(self._point(change, start_ns, now_ns))
        return points

    def _point(self, reading: HistogramReading, start_ns: int, now_ns: int) -> HistogramDataPoint:
        attributes: Attributes = reading.attributes
        return HistogramDataPoint(
            attributes=attributes,
            start_time_unix_nano=start_ns,
            time_unix_nano=now_ns,
            count=sum(reading.counts),
            sum=reading.total,
            bucket_counts=list(reading.counts),
            explicit_bounds=list(self.bounds),
            # Unknown from buckets; None leaves OTLP's optional fields unset.
            min=None,  # type: ignore[arg-type]
            max=None,  # type: ignore[arg-type]
        )
