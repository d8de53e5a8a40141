"""Per-(queue, task) task metrics kept as plain numbers, exposed by a prometheus-client collector.

    families = TaskFamilies(
        received=Family(CounterMetricFamily, "celery_task_received", "...", TASK_LABELS), ...
    )
    collector = TaskSeriesCollector(families, registry, held=HeldRequests(...))
    series = collector.series("default", "example_task")
    series.received += 1                    # the main process's thread only
    series.runtime.observe(0.02, trace_id)  # an exemplar when the task is traced

Why not prometheus-client's labelled children: a delivery updates seven to nine
values, and each child update goes through three Python calls and a lock. In the
worker's main process, the bottleneck on short tasks, that recording cost about
107k instructions per task (callgrind; 4.5% of the main process's work). An
attribute increment costs a few hundred. prometheus-client documents custom
collectors for exactly this: exposing numbers an application already keeps.

One thread writes: Celery calls the request callbacks on the main process's
consumer thread. Scrape threads only read, and under the GIL each int read is
atomic, so a scrape sees every value before or after an update. Two values of
one family may be one delivery apart, as with prometheus-client's per-value locks.
Histogram counts are exposed cumulatively and ``_count`` is the ``+Inf`` bucket,
so each histogram is self-consistent in every scrape.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

TASK_LABELS = ("queue", "task")
QUEUE_LABELS = ("queue",)

#: The kind of a family: prometheus-client's own metric family class for it.
M = TypeVar("M", CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily)


@dataclass(frozen=True, eq=False)
class Family(Generic[M]):
    """Everything about one family of series: its type, name, help sentence, labels and buckets.

    ``kind`` is prometheus-client's class for the type (``CounterMetricFamily``,
    ``GaugeMetricFamily``, ``HistogramMetricFamily``). A counter's name is
    without ``_total``, which the exposition adds. ``buckets`` are a histogram's
    upper bounds, ``+Inf`` aside. Each declaration is one object, equal only to
    itself, so a collection finds its family by identity, at no hashing cost.
    """

    kind: type[M]
    name: str
    documentation: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    def empty(self) -> M:
        """A family with no samples yet, to fill at one collection."""
        return self.kind(self.name, self.documentation, labels=self.labels)


@dataclass(frozen=True)
class TaskFamilies:
    """The per-delivery families, in exposition order, and the outcome label's values."""

    received: Family[CounterMetricFamily]
    started: Family[CounterMetricFamily]
    finished: Family[CounterMetricFamily]
    runtime: Family[HistogramMetricFamily]
    queue_wait: Family[HistogramMetricFamily]
    active: Family[GaugeMetricFamily]
    reserved: Family[GaugeMetricFamily]
    redelivered: Family[CounterMetricFamily]
    duplicate_executions: Family[CounterMetricFamily]
    eta_beyond_visibility: Family[CounterMetricFamily]
    eta_waiting: Family[GaugeMetricFamily]
    oldest_running: Family[GaugeMetricFamily]
    #: The values of ``finished``'s ``outcome`` label; every one starts at zero.
    outcomes: tuple[str, ...]

    def declared(self) -> tuple[Family[Any], ...]:
        """Every family, in the order of the fields above."""
        values = (getattr(self, each.name) for each in fields(self))
        return tuple(value for value in values if isinstance(value, Family))


class Collection:
    """One collection's metric families, one per declaration, each empty until filled."""

    def __init__(self, families: Iterable[Family[Any]]) -> None:
        self._metrics: dict[Family[Any], Metric] = {family: family.empty() for family in families}

    def __getitem__(self, family: Family[M]) -> M:
        # Built by this very declaration's empty(), so of its kind.
        return cast(M, self._metrics[family])

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._metrics.values())


@dataclass(frozen=True)
class HeldReading:
    """What a worker holds per queue, read at render time: requests waiting for their
    ETA, and the age in seconds of the oldest execution in progress."""

    eta_waiting: Mapping[str, int] = field(default_factory=dict)
    oldest_running: Mapping[str, float] = field(default_factory=dict)


class HistogramCounts:
    """One histogram's buckets (``le`` semantics), sum and latest exemplar per bucket.

    An exemplar is kept as a plain (trace id, value, time) tuple and becomes
    prometheus-client's ``Exemplar`` only when rendered: every traced task
    observes two histograms in the main process, and a named tuple with its
    label dict cost it about 4,500 instructions each (callgrind)."""

    __slots__ = ("bounds", "counts", "exemplars", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.exemplars: list[tuple[str, float, float] | None] = [None] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float, trace_id: str | None = None) -> None:
        index = bisect_left(self.bounds, value)
        self.counts[index] += 1
        self.total += value
        if trace_id is not None:
            self.exemplars[index] = (trace_id, value, time.time())

    def cumulative(self) -> list[tuple[str, float] | tuple[str, float, Exemplar]]:
        buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
        running = 0
        for bound, count, exemplar in zip(
            (*self.bounds, math.inf), list(self.counts), list(self.exemplars), strict=True
        ):
            running += count
            le = floatToGoString(bound)  # type: ignore[no-untyped-call]
            if exemplar is None:
                buckets.append((le, running))
            else:
                trace_id, value, timestamp = exemplar
                buckets.append((le, running, Exemplar({"trace_id": trace_id}, value, timestamp)))
        return buckets


class QueueGauges:
    """Tasks of one queue received and not started (``reserved``), and executing (``active``)."""

    __slots__ = ("active", "reserved")

    def __init__(self) -> None:
        self.active = 0
        self.reserved = 0


class TaskSeries:
    """The counts of one (queue, task) pair, with its queue's gauges."""

    __slots__ = (
        "duplicates", "eta_beyond", "finished", "gauges", "queue", "queue_wait", "received",
        "redelivered", "runtime", "started",
    )  # fmt: skip

    def __init__(self, families: TaskFamilies, queue: str, gauges: QueueGauges) -> None:
        self.queue = queue
        self.received = 0
        self.redelivered = 0
        self.duplicates = 0
        self.eta_beyond = 0
        self.started = 0
        self.finished = dict.fromkeys(families.outcomes, 0)
        self.runtime = HistogramCounts(families.runtime.buckets)
        self.queue_wait = HistogramCounts(families.queue_wait.buckets)
        self.gauges = gauges


class TaskSeriesCollector:
    """Hands out :class:`TaskSeries` and renders them on every collection."""

    def __init__(
        self,
        families: TaskFamilies,
        registry: CollectorRegistry | None = None,
        held: Callable[[], HeldReading] | None = None,
    ) -> None:
        """``held``: what the worker holds, read at each render (``telemetry.metrics.held``)."""
        self.families = families
        self.held = held
        self._series: dict[tuple[str, str], TaskSeries] = {}
        self._queues: dict[str, QueueGauges] = {}
        if registry is not None:
            registry.register(self)

    def queue(self, queue: str) -> QueueGauges:
        gauges = self._queues.get(queue)
        if gauges is None:
            gauges = self._queues[queue] = QueueGauges()
        return gauges

    def series(self, queue: str, task: str) -> TaskSeries:
        found = self._series.get((queue, task))
        if found is None:
            found = self._series[(queue, task)] = TaskSeries(
                self.families, queue, self.queue(queue)
            )
        return found

    def items(self) -> list[tuple[tuple[str, str], TaskSeries]]:
        """Every (queue, task) and its live series, for readers besides the exposition
        (the OTLP export); a copy of the keys, safe to take from any thread."""
        return list(self._series.items())

    def describe(self) -> Iterator[Metric]:
        return iter(Collection(self.families.declared()))

    def collect(self) -> Iterator[Metric]:
        f = self.families
        out = Collection(f.declared())
        for (queue, task), series in list(self._series.items()):
            labels = (queue, task)
            out[f.received].add_metric(labels, series.received)
            out[f.started].add_metric(labels, series.started)
            out[f.redelivered].add_metric(labels, series.redelivered)
            out[f.duplicate_executions].add_metric(labels, series.duplicates)
            out[f.eta_beyond_visibility].add_metric(labels, series.eta_beyond)
            for outcome, count in list(series.finished.items()):
                out[f.finished].add_metric((*labels, outcome), count)
            for family, counts in ((f.runtime, series.runtime), (f.queue_wait, series.queue_wait)):
                out[family].add_metric(labels, counts.cumulative(), counts.total)
        held = self.held() if self.held is not None else HeldReading()
        for queue, gauges in list(self._queues.items()):
            out[f.active].add_metric((queue,), gauges.active)
            out[f.reserved].add_metric((queue,), gauges.reserved)
            out[f.eta_waiting].add_metric((queue,), held.eta_waiting.get(queue, 0))
            out[f.oldest_running].add_metric((queue,), held.oldest_running.get(queue, 0.0))
        yield from out
