"""The per-entry series of a beat: created at zero when an entry appears, removed when it goes.

    series = EntrySeries(metrics, max_entries=500, queue_of=lambda entry: "default")
    series.sync(entries, now)             # the scheduler's entries, at start and after ticks
    series.sent(entry, plan, now, next_at, period)
    series.failed(entry, plan, now, next_at, period)

At most ``max_entries`` entries are labelled by name, the first seen keeping
their place; the rest count under ``entry="other"`` (logged once), which has
counters and lateness but no per-entry gauges. An entry that leaves the
schedule frees its place and loses its series. Only beat's own thread writes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from telemetry.beat import schedules
from telemetry.beat.schedules import SendPlan
from telemetry.metrics.beat_catalogue import BeatMetrics

logger = logging.getLogger("telemetry.beat")

OTHER_ENTRY = "other"


@dataclass(frozen=True)
class EntryLabels:
    task: str
    queue: str


class EntrySeries:
    def __init__(
        self, metrics: BeatMetrics, max_entries: int, queue_of: Callable[[Any], str]
    ) -> None:
        self.metrics = metrics
        self.max_entries = max_entries
        self.queue_of = queue_of
        self._labelled: dict[str, EntryLabels] = {}
        self._overflow_logged = False

    @property
    def names(self) -> frozenset[str]:
        """The entries labelled by name."""
        return frozenset(self._labelled)

    def sync(self, entries: Mapping[str, Any], now: float, *, known_too: bool = True) -> None:
        """Series for every entry, none for an entry no longer there.

        ``known_too``: also re-read the entries already labelled (a task, queue or
        schedule edited in place); otherwise only the names that came or went.
        """
        for name in [name for name in self._labelled if name not in entries]:
            self._remove(name)
        for name in sorted(entries):
            if known_too or name not in self._labelled:
                self.track(entries[name], now)

    def track(self, entry: Any, now: float) -> tuple[str, EntryLabels]:
        """The entry's ``entry`` label and its other labels, its series created (or relabelled) at zero."""
        name = str(entry.name)
        labels = EntryLabels(str(entry.task), self.queue_of(entry))
        current = self._labelled.get(name)
        if current is None:
            if len(self._labelled) >= self.max_entries:
                self._overflow(name, labels)
                return OTHER_ENTRY, labels
            self._labelled[name] = labels
            self._create(name, labels)
            self._gauges(name, entry, now)
        elif current != labels:
            self._counters_removed(name, current)
            self._labelled[name] = labels
            self._create(name, labels)
        return name, labels

    def sent(
        self,
        entry: Any,
        plan: SendPlan,
        sent_at: float,
        next_at: float | None,
        period: float | None,
    ) -> None:
        """A run published: counted, and observed as lateness unless it was the catch-up."""
        name, labels = self.track(entry, sent_at)
        metrics = self.metrics
        metrics.entry_sent.labels(name, labels.task, labels.queue).inc()
        if plan.catchup:
            metrics.entry_catchup.labels(name).inc()
        elif plan.due is not None:
            metrics.entry_lateness.labels(name).observe(max(0.0, sent_at - plan.due))
        if plan.missed > 0:
            metrics.entry_missed.labels(name).inc(plan.missed)
        if name != OTHER_ENTRY:
            metrics.entry_last_sent.labels(name).set(sent_at)
            self._schedule_gauges(name, next_at, period)

    def failed(
        self, entry: Any, plan: SendPlan, now: float, next_at: float | None, period: float | None
    ) -> None:
        """A publish that failed: the run is lost; the runs before it were missed all the same."""
        name, labels = self.track(entry, now)
        self.metrics.entry_send_errors.labels(name, labels.task).inc()
        if plan.missed > 0:
            self.metrics.entry_missed.labels(name).inc(plan.missed)
        if name != OTHER_ENTRY:
            self._schedule_gauges(name, next_at, period)

    # --- series ---------------------------------------------------------------
    def _create(self, name: str, labels: EntryLabels) -> None:
        metrics = self.metrics
        metrics.entry_sent.labels(name, labels.task, labels.queue)
        metrics.entry_send_errors.labels(name, labels.task)
        metrics.entry_lateness.labels(name)
        metrics.entry_catchup.labels(name)
        metrics.entry_missed.labels(name)

    def _gauges(self, name: str, entry: Any, now: float) -> None:
        """Interval and next due from the schedule; last sent as the store has it, once it ran."""
        entry_schedule, last_run_at = entry.schedule, entry.last_run_at
        next_at = schedules.next_due(entry_schedule, last_run_at, now)
        period = schedules.interval(entry_schedule, now, next_at)
        self._schedule_gauges(name, next_at, period)
        if last_run_at is not None and (getattr(entry, "total_run_count", 0) or 0) > 0:
            sent_at = schedules.timestamp(entry_schedule, last_run_at)
            self.metrics.entry_last_sent.labels(name).set(sent_at)

    def _schedule_gauges(self, name: str, next_at: float | None, period: float | None) -> None:
        if next_at is not None:
            self.metrics.entry_next_due.labels(name).set(next_at)
        if period is not None:
            self.metrics.entry_interval.labels(name).set(period)

    def _overflow(self, name: str, labels: EntryLabels) -> None:
        self.metrics.entry_sent.labels(OTHER_ENTRY, labels.task, labels.queue)
        self.metrics.entry_send_errors.labels(OTHER_ENTRY, labels.task)
        self.metrics.entry_lateness.labels(OTHER_ENTRY)
        self.metrics.entry_catchup.labels(OTHER_ENTRY)
        self.metrics.entry_missed.labels(OTHER_ENTRY)
        if not self._overflow_logged:
            self._overflow_logged = True
            logger.warning(
                "beat: more than BEAT_MAX_ENTRIES (%d) schedule entries: %r and any "
                'further ones count under entry="other"',
                self.max_entries,
                name,
            )

    def _remove(self, name: str) -> None:
        labels = self._labelled.pop(name)
        self._counters_removed(name, labels)
        metrics = self.metrics
        for family in (
            metrics.entry_lateness,
            metrics.entry_catchup,
            metrics.entry_missed,
            metrics.entry_interval,
            metrics.entry_last_sent,
            metrics.entry_next_due,
        ):
            with contextlib.suppress(KeyError):
                family.remove(name)

    def _counters_removed(self, name: str, labels: EntryLabels) -> None:
        with contextlib.suppress(KeyError):
            self.metrics.entry_sent.remove(name, labels.task, labels.queue)
        with contextlib.suppress(KeyError):
            self.metrics.entry_send_errors.remove(name, labels.task)
