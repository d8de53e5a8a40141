"""A counter that pool processes forked after it add to, and the main process exposes.

    errors = SharedCounter()          # before the pool forks
    errors.inc()                      # in any process forked from this one
    registry.register(SharedCounterCollector("x_errors", "...", errors))

prometheus-client's own counters live in one process's memory; multiprocess mode
would drop exemplars for the whole registry (``telemetry.metrics.catalogue``).
For rare events counted in pool processes (a write the broker refused), one
``multiprocessing.Value`` is enough.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class SharedCounter:
    """A count that processes forked after its construction add to; read by the parent.

    One ``multiprocessing.Value`` with its lock: the additions are rare (errors).
    """

    def __init__(self) -> None:
        self._value = multiprocessing.Value("Q", 0)

    def inc(self) -> None:
        with self._value.get_lock():
            self._value.value += 1

    @property
    def value(self) -> int:
        return int(self._value.value)


class SharedCounterCollector(Collector):
    """Exposes a :class:`SharedCounter` as a counter family, read at each collection."""

    def __init__(self, name: str, documentation: str, counter: SharedCounter) -> None:
        self.name = name
        self.documentation = documentation
        self.counter = counter

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.counter.value)
