"""The arithmetic of due times: which run a send stands for, and which runs were missed.

    plan = plan_send(entry.schedule, entry.last_run_at, decided_at, active_since=t, deadline=None)
    plan.due        # the due time this send stands for (Unix seconds), or None
    plan.missed     # due runs before it that were never sent
    plan.catchup    # Celery's one overdue run after downtime

Interval (``schedule``) and ``crontab`` entries are enumerable: their due times
after the stored ``last_run_at`` can be listed, with Celery's own arithmetic.
Solar and custom schedules are not: their sends are counted, and none of them is
called late, missed or a catch-up.

A send stands for the latest due time at the moment beat decided to send (the
start of its tick). The due times between the entry's ``last_run_at`` and that
one were never sent: missed. Celery sends one run for all of them: an entry
already overdue when this beat became active (it started, or a standby took
over) gets one catch-up run, its first send since. With
``beat_cron_starting_deadline``, Celery skips that run for a crontab whose last
due time is older than the deadline, and waits for the next due time, which
then stands for all the earlier ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from celery.schedules import crontab, schedule
from celery.utils.time import remaining

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Crontab due times listed one by one before the count is extrapolated: 10,000
#: (about 0.3 s of Celery's arithmetic) covers a week of an every-minute crontab.
MAX_ENUMERATED = 10_000
#: Past the cap, the due times closest to the send are listed exactly again.
TAIL_ENUMERATED = 100
#: A crontab's previous due time is looked for this many times, each twice as far back.
PREVIOUS_ATTEMPTS = 8


@dataclass(frozen=True)
class SendPlan:
    """What one send of an entry stands for."""

    due: float | None
    missed: int = 0
    catchup: bool = False
    #: Past MAX_ENUMERATED due times, ``missed`` is extrapolated.
    estimated: bool = False


@dataclass(frozen=True)
class DueCount:
    """Due times in an interval: how many, and the latest of them."""

    count: int
    latest: float | None
    exact: bool = True


class DueTimes(Protocol):
    def next_after(self, moment: float) -> float: ...

    def between(self, after: float, until: float) -> DueCount: ...

    def previous(self, moment: float) -> float | None: ...


class IntervalDueTimes:
    """Every ``period`` seconds after the last run: Celery's ``schedule`` (not ``relative``)."""

    def __init__(self, period: float) -> None:
        self.period = period

    def next_after(self, moment: float) -> float:
        return moment + self.period

    def between(self, after: float, until: float) -> DueCount:
        if until < after + self.period:
            return DueCount(0, None)
        # A due time falling on ``until`` to the microsecond counts as passed.
        count = math.floor((until - after) / self.period + 1e-9)
        return DueCount(count, after + count * self.period)

    def previous(self, moment: float) -> float | None:
        return None  # due times hang on the last run, not on the clock


class CronDueTimes:
    """A ``crontab``'s due times, each found from the last by Celery's own ``remaining_delta``."""

    def __init__(self, cron: crontab) -> None:
        self.cron = cron

    def next_after(self, moment: float) -> float:
        start, delta, _ = self.cron.remaining_delta(datetime.fromtimestamp(moment, UTC))
        return float(remaining(start, delta, EPOCH).total_seconds())

    def between(self, after: float, until: float) -> DueCount:
        first = moment = self.next_after(after)
        count, latest = 0, None
        while moment <= until:
            count, latest = count + 1, moment
            if count == MAX_ENUMERATED:
                return self._extrapolated(first, until, count, moment)
            moment = self.next_after(moment)
        return DueCount(count, latest)

    def previous(self, moment: float) -> float | None:
        """The latest due time at or before ``moment``: listed from ever earlier starts."""
        following = self.next_after(moment)
        reach = self.next_after(following) - following
        for _ in range(PREVIOUS_ATTEMPTS):
            latest = self.between(moment - 2 * reach, moment).latest
            if latest is not None:
                return latest
            reach *= 2
        return None

    def _extrapolated(self, first: float, until: float, count: int, reached: float) -> DueCount:
        """Past the cap: the middle by the average gap so far, the last due times exactly."""
        gap = (reached - first) / (count - 1)
        anchor = max(reached, until - TAIL_ENUMERATED * gap)
        tail = 0
        latest, moment = reached, self.next_after(anchor)
        while moment <= until:
            tail, latest = tail + 1, moment
            moment = self.next_after(moment)
        middle = math.floor((anchor - reached) / gap)
        return DueCount(count + middle + tail, latest, exact=False)


def due_times_of(entry_schedule: Any) -> DueTimes | None:
    """The due times of an enumerable schedule; None for solar, custom or relative ones."""
    if isinstance(entry_schedule, crontab):
        return CronDueTimes(entry_schedule)
    if isinstance(entry_schedule, schedule) and not entry_schedule.relative:
        period = entry_schedule.run_every.total_seconds()
        return IntervalDueTimes(period) if period > 0 else None
    return None


def timestamp(entry_schedule: Any, moment: datetime) -> float:
    """A schedule's datetime as Unix seconds; naive ones are UTC, as Celery takes them."""
    aware = entry_schedule.maybe_make_aware(moment) if entry_schedule is not None else moment
    return float(aware.timestamp())


def plan_send(
    entry_schedule: Any,
    last_run_at: datetime | None,
    decided_at: float,
    *,
    active_since: float | None,
    deadline: float | None = None,
) -> SendPlan:
    """What a send decided at ``decided_at`` stands for, given the entry's previous run.

    ``active_since``: when this beat became active, for the entry's first send since
    then (None for the later ones); ``deadline``: ``beat_cron_starting_deadline``.
    """
    due_times = due_times_of(entry_schedule)
    if due_times is None or last_run_at is None:
        return SendPlan(None)
    last = timestamp(entry_schedule, last_run_at)
    due = due_times.between(last, decided_at)
    if due.latest is None:  # sent a little before its due time (Celery's heap drift)
        return SendPlan(due_times.next_after(last))
    catchup = False
    if active_since is not None and due_times.next_after(last) <= active_since:
        catchup = not skipped_by_deadline(due_times, last, active_since, deadline)
    return SendPlan(due.latest, due.count - 1, catchup, not due.exact)


def skipped_by_deadline(
    due_times: DueTimes, last: float, started: float, deadline: float | None
) -> bool:
    """Celery's ``crontab.is_due``: no catch-up when no due time falls within the deadline."""
    if deadline is None or not isinstance(due_times, CronDueTimes):
        return False
    latest = due_times.between(last, started).latest
    return latest is None or latest < started - deadline


def next_due(entry_schedule: Any, last_run_at: datetime | None, now: float) -> float | None:
    """When the entry is due next after its last run (in the past when overdue); for a
    schedule that is not enumerable, by its own ``is_due`` (now, if it is overdue)."""
    if last_run_at is None:
        return now
    due_times = due_times_of(entry_schedule)
    if due_times is not None:
        return due_times.next_after(timestamp(entry_schedule, last_run_at))
    is_due, next_seconds = entry_schedule.is_due(last_run_at)
    return now if is_due else now + float(next_seconds)


def interval(entry_schedule: Any, now: float, next_at: float | None) -> float | None:
    """The period of an enumerable schedule; for a crontab, from its last due time to its next."""
    due_times = due_times_of(entry_schedule)
    if isinstance(due_times, IntervalDueTimes):
        return due_times.period
    if due_times is None or next_at is None:
        return None
    previous = due_times.previous(now)
    return None if previous is None else next_at - previous
