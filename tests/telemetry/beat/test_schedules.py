"""Due times of interval and crontab entries: late, missed and catch-up runs, against Celery's own rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery
from celery.schedules import BaseSchedule, crontab, schedule

from telemetry.beat import schedules
from telemetry.beat.schedules import SendPlan, plan_send


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ts(text: str) -> float:
    return at(text).timestamp()


@pytest.fixture
def app() -> Celery:
    return Celery("unit", set_as_current=False)


def test_an_interval_entry_sent_on_time_is_late_by_the_difference(app: Celery) -> None:
    every = schedule(timedelta(seconds=10), app=app)
    plan = plan_send(
        every, at("2026-12-06 10:00:00"), ts("2026-12-06 10:00:10.25"), active_since=None
    )
    assert plan == SendPlan(ts("2026-12-06 10:00:10"), missed=0, catchup=False)


def test_a_send_a_little_early_stands_for_the_next_due_time(app: Celery) -> None:
    """Celery's heap wakes beat up to 10 ms early (``Scheduler.adjust``)."""
    every = schedule(timedelta(seconds=10), app=app)
    plan = plan_send(
        every, at("2026-12-06 10:00:00"), ts("2026-12-06 10:00:09.99"), active_since=None
    )
    assert plan == SendPlan(ts("2026-12-06 10:00:10"))


def test_after_downtime_the_overdue_run_is_the_catchup_and_the_others_are_missed(
    app: Celery,
) -> None:
    """Given a beat stopped after the 10:00:00 run and started again at 10:00:55,
    when it sends at its first tick, then the runs due at 10, 20, 30, 40 and 50 s
    were one catch-up and four missed runs."""
    every = schedule(timedelta(seconds=10), app=app)
    started = ts("2026-12-06 10:00:55")
    # Celery itself sends one run now, and then waits a whole period.
    assert every.is_due(at("2026-12-06 10:00:00")).is_due
    plan = plan_send(every, at("2026-12-06 10:00:00"), started, active_since=started)
    assert plan == SendPlan(ts("2026-12-06 10:00:50"), missed=4, catchup=True)


def test_the_first_send_after_a_long_first_tick_is_still_the_catchup(app: Celery) -> None:
    """Given a beat that started at 10:00:55 and waited 6 s for its broker, whose first
    tick sent another entry, when this entry's first send is decided at 10:01:01, then
    it is the catch-up (it was overdue when beat started), and 5 runs were missed."""
    every = schedule(timedelta(seconds=10), app=app)
    started = ts("2026-12-06 10:00:55")
    plan = plan_send(
        every, at("2026-12-06 10:00:00"), ts("2026-12-06 10:01:01"), active_since=started
    )
    assert plan == SendPlan(ts("2026-12-06 10:01:00"), missed=5, catchup=True)


def test_a_loop_blocked_while_running_misses_the_runs_it_skipped(app: Celery) -> None:
    every = schedule(timedelta(seconds=10), app=app)
    plan = plan_send(every, at("2026-12-06 10:00:00"), ts("2026-12-06 10:00:32"), active_since=None)
    assert plan == SendPlan(ts("2026-12-06 10:00:30"), missed=2, catchup=False)


def test_a_crontab_counts_each_minute_it_skipped(app: Celery) -> None:
    every_minute = crontab(app=app)
    started = ts("2026-12-06 10:05:30")
    plan = plan_send(every_minute, at("2026-12-06 10:00:00"), started, active_since=started)
    assert plan == SendPlan(ts("2026-12-06 10:05:00"), missed=4, catchup=True)


def test_a_crontab_follows_the_apps_timezone(app: Celery) -> None:
    app.conf.timezone = "Europe/Paris"
    nine = crontab(hour=9, minute=0, app=app)
    due = schedules.due_times_of(nine)
    assert due is not None
    # 09:00 in Paris is 08:00 UTC in winter
    assert due.next_after(ts("2026-12-06 07:00:00")) == ts("2026-12-06 08:00:00")


def test_with_a_starting_deadline_no_catchup_is_sent_and_every_skipped_run_is_missed(
    app: Celery,
) -> None:
    """Given an hourly crontab last run at 08:00 and beat_cron_starting_deadline of a
    minute, a beat started at 10:30 sends nothing (Celery skips the stale run); its
    first send, at 11:00, then stands for 11:00, and 09:00 and 10:00 were missed."""
    app.conf.beat_cron_starting_deadline = 60
    now = at("2026-12-06 10:30:00")
    hourly = crontab(minute=0, app=app, nowfun=lambda: now)
    assert not hourly.is_due(at("2026-12-06 08:00:00")).is_due  # Celery's own decision
    started = now.timestamp()
    plan = plan_send(
        hourly,
        at("2026-12-06 08:00:00"),
        ts("2026-12-06 11:00:00.004"),
        active_since=started,
        deadline=60,
    )
    assert plan == SendPlan(ts("2026-12-06 11:00:00"), missed=2, catchup=False)
    # Within the deadline (10:00 is less than 45 minutes before 10:30), Celery sends it
    app.conf.beat_cron_starting_deadline = 2700
    assert hourly.is_due(at("2026-12-06 08:00:00")).is_due
    within = plan_send(
        hourly, at("2026-12-06 08:00:00"), started, active_since=started, deadline=2700
    )
    assert within == SendPlan(ts("2026-12-06 10:00:00"), missed=1, catchup=True)


def test_past_ten_thousand_due_times_the_count_is_extrapolated_and_the_last_one_exact(
    app: Celery,
) -> None:
    every_minute = crontab(app=app)
    last, sent = at("2026-11-01 00:00:00"), ts("2026-11-11 00:00:30")
    plan = plan_send(every_minute, last, sent, active_since=sent)
    assert plan.estimated and plan.catchup
    assert plan.due == ts("2026-11-11 00:00:00")
    assert plan.missed == 10 * 24 * 60 - 1  # uniform gaps: the estimate is exact


@pytest.mark.parametrize(
    "entry_schedule",
    [
        pytest.param(lambda app: schedule(10, relative=True, app=app), id="relative"),
        pytest.param(lambda app: Fortnightly(app=app), id="custom"),
    ],
)
def test_schedules_that_cannot_be_enumerated_count_nothing(
    app: Celery, entry_schedule: Any
) -> None:
    plan = plan_send(entry_schedule(app), at("2026-01-01"), ts("2026-12-06"), active_since=0)
    assert plan == SendPlan(None)


def test_an_entry_that_never_ran_is_neither_late_nor_a_catchup(app: Celery) -> None:
    """RedBeat's new entries have no last run; they are due at once."""
    assert plan_send(schedule(10, app=app), None, 1.0, active_since=1.0) == SendPlan(None)


def test_a_crontab_interval_runs_from_its_last_due_time_to_its_next(app: Celery) -> None:
    twice_a_day = crontab(minute=0, hour="9,17", app=app)
    noon = ts("2026-12-06 12:00:00")
    next_at = schedules.next_due(twice_a_day, at("2026-12-06 09:00:00"), noon)
    assert next_at == ts("2026-12-06 17:00:00")
    assert schedules.interval(twice_a_day, noon, next_at) == 8 * 3600
    evening = ts("2026-12-06 18:00:00")
    next_at = schedules.next_due(twice_a_day, at("2026-12-06 17:00:00"), evening)
    assert schedules.interval(twice_a_day, evening, next_at) == 16 * 3600
    assert schedules.interval(schedule(30, app=app), noon, noon + 30) == 30


class Fortnightly(BaseSchedule):  # type: ignore[misc]
    """A custom schedule: only ``is_due``, as Celery asks of one."""

    def is_due(self, last_run_at: datetime) -> tuple[bool, float]:
        return (False, 3600.0)
