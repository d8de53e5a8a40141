"""Runtime buckets of failed deliveries, by (queue, task, error type): what ``error.type`` needs.

    failed = FailedRuntimes(RUNTIME_BUCKETS)
    # the recorder, on a failure: into the runtime histogram, then by error type
    failed.record(series.runtime, "default", "send_mail", error_type(exc), 0.02, trace_id)
    # the OTLP export, from another thread: both read as of one moment
    snapshot = failed.consistent(lambda: (failed.items(), copy_runtimes()))

The runtime histogram keeps only queue and task, and ``celery_task_exceptions_total``
the short class name, while ``messaging.process.duration`` carries the fully qualified
class on failed deliveries (``telemetry.metrics.otlp``). So the delivery recorder
also keeps these buckets, on failures only, with the same plain numbers
(:class:`~telemetry.metrics.task_series.HistogramCounts`), each created at its first
failure. Like the other series, one thread writes (the main process's consumer
thread) and readers copy.

A failed run is recorded twice, in its task's runtime histogram and here, and the
OTLP export subtracts the second from the first to get the runs without
``error.type``. A reader between the two writes would see a run counted as a
success and, at the next export, as a failure: a cumulative count going down,
which backends take for a reset. So the two writes are bracketed by a version
number, odd while writing, and :meth:`FailedRuntimes.consistent` reads again
until no failure was recorded meanwhile (a seqlock; successes write once and
need none of it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from opentelemetry.semconv.attributes.error_attributes import ErrorTypeValues

from telemetry.metrics.task_series import HistogramCounts

#: Distinct (queue, task, error type) triples kept; past it, new ones share ``_OTHER``
#: (an app raising classes made at run time must not grow the worker without bound).
MAX_FAILURE_SERIES = 2_000
OTHER_ERROR = ErrorTypeValues.OTHER.value
#: Reads attempted before :meth:`FailedRuntimes.consistent` gives up (failures being
#: recorded without pause for this long: 1 ms apart, 0.2 s).
READ_ATTEMPTS = 200
_Read = TypeVar("_Read")


def error_type(exception: BaseException | None) -> str:
    """The class's fully qualified name, as the SDK writes ``exception.type``: builtins bare."""
    if exception is None:
        return OTHER_ERROR
    module, qualname = type(exception).__module__, type(exception).__qualname__
    return qualname if module in (None, "builtins") else f"{module}.{qualname}"


class FailedRuntimes:
    """Runtime histograms of failed deliveries, one per (queue, task, error type) seen."""

    def __init__(self, bounds: tuple[float, ...], limit: int = MAX_FAILURE_SERIES) -> None:
        self.bounds = bounds
        self.limit = limit
        self._counts: dict[tuple[str, str, str], HistogramCounts] = {}
        #: Odd while a failure is being recorded.
        self.version = 0

    def record(
        self,
        runtime: HistogramCounts,
        queue: str,
        task: str,
        error: str,
        seconds: float,
        trace_id: str | None = None,
    ) -> None:
        """A failed run: into its task's ``runtime`` histogram, then here, as one change."""
        self.version += 1
        try:
            runtime.observe(seconds, trace_id)
            self._observe(queue, task, error, seconds)
        finally:
            self.version += 1

    def consistent(self, read: Callable[[], _Read]) -> _Read | None:
        """``read()``, retried until no failure was recorded while it ran; None if that never held."""
        for _ in range(READ_ATTEMPTS):
            before = self.version
            if before % 2 == 0:
                value = read()
                if self.version == before:
                    return value
            time.sleep(0.001)  # lets the writing thread finish
        return None

    def _observe(self, queue: str, task: str, error: str, seconds: float) -> None:
        key = (queue, task, error)
        counts = self._counts.get(key)
        if counts is None:
            if len(self._counts) >= self.limit:
                key = (queue, task, OTHER_ERROR)
                counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = HistogramCounts(self.bounds)
        counts.observe(seconds)

    def items(self) -> list[tuple[tuple[str, str, str], HistogramCounts]]:
        """A copy of the keys and their live counts, safe to take from any thread."""
        return list(self._counts.items())
