"""What the OTLP export reads at each collection: the series a process already keeps.

    readings = WorkerReadings(metrics, recorder.failed_runtimes, "redis", polls_queues=True)
    readings.observed()   # counters and gauges: callbacks of observable instruments
    readings.derived()    # histograms: their bucket counts, for the SDK's data types

Nothing here is recorded per task: every value is read, at export time, from the
numbers behind ``/metrics`` (``telemetry.metrics.task_series``, the publish
counter, the depth and age gauges) and from the failed runtimes by error type
(``telemetry.metrics.failed_runtimes``), so the OTLP counts equal ``/metrics``.
Attribute values are the ``/metrics`` label values: the queue (``other`` for an
undeclared one) and the task name (``unknown`` for an unregistered one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Observation
from prometheus_client import Counter, Gauge

from telemetry.metrics.catalogue import BrokerMetrics, WorkerMetrics
from telemetry.metrics.failed_runtimes import FailedRuntimes
from telemetry.metrics.otlp.histograms import HistogramReading
from telemetry.metrics.otlp.names import (
    CONSUMED_MESSAGES,
    DESTINATION,
    ERROR,
    OPERATION,
    OUTCOME,
    PROCESS,
    PROCESS_DURATION,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    QUEUE_WAIT_DURATION,
    SEND,
    SENT_MESSAGES,
    SYSTEM,
    TASK,
    TASK_FINISHED,
    Instrument,
)
from telemetry.metrics.task_series import HistogramCounts

Callback = Callable[[CallbackOptions], Iterable[Observation]]
Copied = tuple[tuple[int, ...], float]


@dataclass(frozen=True)
class Observed:
    """A counter or gauge, observed by the SDK through ``callback``."""

    instrument: Instrument
    callback: Callback


@dataclass(frozen=True)
class Derived:
    """A histogram built from bucket counts; ``read`` returns None when it cannot read them now."""

    instrument: Instrument
    bounds: tuple[float, ...]
    read: Callable[[], Sequence[HistogramReading] | None]


class Readings(Protocol):
    """What one process exports."""

    def observed(self) -> list[Observed]: ...

    def derived(self) -> list[Derived]: ...


def copied(counts: HistogramCounts) -> Copied:
    return tuple(counts.counts), counts.total


def samples(metric: Counter | Gauge, suffix: str = "") -> Iterable[tuple[dict[str, str], float]]:
    """A prometheus-client metric's current values by labels (``suffix``: the sample to keep)."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                yield sample.labels, sample.value


def sent_messages(counter: Callable[[], Counter | None], system: str) -> Observed:
    """``messaging.client.sent.messages`` from a ``celery_task_published_total`` counter
    (``counter()``: None until the process has one)."""

    def observe(_: CallbackOptions) -> Iterable[Observation]:
        found = counter()
        if found is None:
            return []
        return [
            Observation(
                value,
                {
                    SYSTEM: system,
                    DESTINATION: labels["queue"],
                    OPERATION: SEND,
                    TASK: labels["task"],
                },
            )
            for labels, value in samples(found, "_total")
        ]

    return Observed(SENT_MESSAGES, observe)


class BrokerReadings:
    """Depth and age per queue, as the last poll left them in the gauges."""

    def __init__(self, broker: BrokerMetrics, system: str) -> None:
        self.broker = broker
        self.system = system

    def observed(self) -> list[Observed]:
        return [
            Observed(QUEUE_DEPTH, self._gauge(self.broker.queue_depth)),
            Observed(QUEUE_OLDEST_AGE, self._gauge(self.broker.queue_oldest_age)),
        ]

    def derived(self) -> list[Derived]:
        return []

    def _gauge(self, gauge: Gauge) -> Callback:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(value, {SYSTEM: self.system, DESTINATION: labels["queue"]})
                for labels, value in samples(gauge)
            ]

        return observe


class WorkerReadings:
    """A worker main process's series; depth and age only when it polls them."""

    def __init__(
        self, metrics: WorkerMetrics, failed: FailedRuntimes, system: str, polls_queues: bool
    ) -> None:
        self.metrics = metrics
        self.failed = failed
        self.system = system
        self.broker = BrokerReadings(metrics.broker, system) if polls_queues else None

    def observed(self) -> list[Observed]:
        observed = [
            Observed(CONSUMED_MESSAGES, self._consumed),
            sent_messages(lambda: self.metrics.task_published, self.system),
            Observed(TASK_FINISHED, self._finished),
        ]
        return observed + (self.broker.observed() if self.broker is not None else [])

    def derived(self) -> list[Derived]:
        runtime = self.metrics.tasks.families.runtime.buckets
        queue_wait = self.metrics.tasks.families.queue_wait.buckets
        return [
            Derived(PROCESS_DURATION, runtime, self._process_durations),
            Derived(QUEUE_WAIT_DURATION, queue_wait, self._queue_waits),
        ]

    def _task(self, queue: str, task: str) -> dict[str, str]:
        return {SYSTEM: self.system, DESTINATION: queue, TASK: task}

    def _consumed(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(series.received, {**self._task(*key), OPERATION: PROCESS})
            for key, series in self.metrics.tasks.items()
        ]

    def _finished(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {**self._task(*key), OUTCOME: outcome})
            for key, series in self.metrics.tasks.items()
            for outcome, count in list(series.finished.items())
        ]

    def _queue_waits(self) -> list[HistogramReading]:
        return [
            HistogramReading(self._task(*key), *copied(series.queue_wait))
            for key, series in self.metrics.tasks.items()
        ]

    def _process_durations(self) -> list[HistogramReading] | None:
        """Per (queue, task): the failed runs by error type, and the other runs, which are
        the runtime histogram less the failed ones, all read as of one moment."""

        def read() -> tuple[
            list[tuple[tuple[str, str, str], Copied]], dict[tuple[str, str], Copied]
        ]:
            failed = [(key, copied(counts)) for key, counts in self.failed.items()]
            runs = {key: copied(series.runtime) for key, series in self.metrics.tasks.items()}
            return failed, runs

        snapshot = self.failed.consistent(read)
        if snapshot is None:
            return None
        failed, runs = snapshot
        readings = []
        others = {
            key: HistogramReading({**self._task(*key), OPERATION: PROCESS}, *values)
            for key, values in runs.items()
        }
        for (queue, task, error), values in failed:
            reading = HistogramReading(
                {**self._task(queue, task), OPERATION: PROCESS, ERROR: error}, *values
            )
            readings.append(reading)
            if (queue, task) in others:
                others[(queue, task)] = others[(queue, task)].minus(reading)
        return readings + list(others.values())
