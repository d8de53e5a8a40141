"""celery beat: its alert rules (rules/beat.yml) and the overview's "Beat" row.

A beat is down when none sends, or the one that sends has a stale loop; its
entries' runs can be missed, fail to publish, or go out late; and two beats of
one app send every periodic task twice. RUNBOOK.md says what to do about each.

A beat counts the runs missed while it was down, and any send error of its
first tick, before Prometheus first scrapes it: those counters start above
zero, which ``increase()`` cannot see. :func:`counter_rose` also fires on a
series that is above zero and did not exist ``window`` ago.
"""

from __future__ import annotations

from typing import Any

from dashboards.config import beat_selector
from dashboards.panels import Panels
from dashboards.rules import alert


def counter_rose(metric: str, by: str, window: str, selector: str) -> str:
    """A counter that rose within ``window``, or a new series of it that starts above zero."""
    series = f"{metric}{selector}"
    return (
        f"sum by ({by}) (increase({series}[{window}])) > 0\n"
        f"or sum by ({by}) ({series} unless {series} offset {window}) > 0"
    )


def beat_down(selector: str) -> str:
    active = f"celery_beat_active{selector}"
    timeout = f"celery_beat_liveness_timeout_seconds{selector}"
    return (
        f"absent({active} == 1)\n"
        "or (\n"
        f"  time() - celery_beat_tick_timestamp_seconds{selector} > {timeout}\n"
        f"  and {timeout} > 0\n"
        f"  and on (instance, job) {active} == 1\n"
        ")"
    )


def beat_down_alert(config: dict[str, Any], selector: str) -> list[dict[str, Any]]:
    """``CeleryBeatDown``, only where ``beat.enabled`` says the app runs beat."""
    if not config["beat"]["enabled"]:
        return []
    return [
        alert(
            config,
            "CeleryBeatDown",
            beat_down(selector),
            "critical",
            "No Celery beat is sending periodic tasks.",
            "No beat target reports celery_beat_active 1 (none runs, none answers "
            "its scrape, or every one waits for a lock or its broker), or the beat "
            "that sends has not turned its loop within its liveness timeout. "
            "Periodic tasks are not being sent.",
        )
    ]


def beat_rules(config: dict[str, Any]) -> dict[str, Any]:
    s = beat_selector(config)
    alerts = config["alerts"]
    missed = alerts["CeleryBeatEntryMissed"]
    errors = alerts["CeleryBeatEntrySendErrors"]
    late = alerts["CeleryBeatEntryLate"]
    share, window = late["maxShareOfInterval"], late["window"]
    lateness = "celery_beat_entry_lateness_seconds"
    by_entry = "job, instance, entry"
    return {
        "groups": [
            {
                "name": "celery-beat.alerts",
                "rules": [
                    *beat_down_alert(config, s),
                    alert(
                        config,
                        "CeleryBeatEntryMissed",
                        counter_rose(
                            "celery_beat_entry_missed_total", by_entry, missed["window"], s
                        ),
                        "warning",
                        "Runs of the beat entry {{ $labels.entry }} were never sent.",
                        "Due runs of the entry were skipped: beat was down (or a standby took "
                        f"over) past them, or its loop was blocked, within {missed['window']}. "
                        "Celery sends one catch-up run for them, not each.",
                    ),
                    alert(
                        config,
                        "CeleryBeatEntrySendErrors",
                        counter_rose(
                            "celery_beat_entry_send_errors_total",
                            f"{by_entry}, task",
                            errors["window"],
                            s,
                        ),
                        "warning",
                        "Beat failed to publish runs of {{ $labels.entry }}.",
                        f"Publishing a run of the entry failed within {errors['window']}, usually "
                        "because the broker was unreachable. Celery does not retry a run: those "
                        "runs are lost.",
                    ),
                    alert(
                        config,
                        "CeleryBeatEntryLate",
                        f"(\n  sum by ({by_entry}) (increase({lateness}_sum{s}[{window}]))\n"
                        f"  / sum by ({by_entry}) (increase({lateness}_count{s}[{window}]))\n"
                        f")\n> {share} * celery_beat_entry_interval_seconds{s}",
                        "warning",
                        "Runs of the beat entry {{ $labels.entry }} go out late.",
                        f"Over {window}, its runs were published on average more than "
                        f"{share:.0%} of its interval after their due time: beat's loop is busy "
                        "or blocked (slow sends, a slow schedule store, a loaded host).",
                    ),
                    alert(
                        config,
                        "CeleryBeatDuplicate",
                        f"celery_beat_instances{s} > 1",
                        "warning",
                        "More than one Celery beat of the app is sending.",
                        "{{ $value }} beats of the app hold a live heartbeat: each sends every "
                        "periodic task, so each runs more than once. A RedBeat standby waiting "
                        "for its lock is not counted.",
                    ),
                ],
            }
        ]
    }


def beat_panels(config: dict[str, Any], panels: Panels) -> None:
    s = beat_selector(config)
    panels.row("Beat")
    panels.add(
        "Beats",
        [
            (f"sum(celery_beat_active{s})", "sending"),
            (f"max(celery_beat_instances{s})", "sending, by heartbeat"),
            (f"count(up{s} == 1)", "up"),
        ],
        description="Beats that send, as they say themselves and by their heartbeats on the "
        "broker, and beat targets that answer their scrape. A standby is up and not sending.",
    )
    panels.add(
        "Beat loop: time since the last tick",
        [
            (
                f"time() - max by (instance) (celery_beat_tick_timestamp_seconds{s})",
                "{{instance}}",
            ),
            (f"max(celery_beat_liveness_timeout_seconds{s})", "liveness timeout"),
        ],
        unit="s",
        description="The tick Celery's own stale check reads. Past the liveness timeout, "
        "/livez fails.",
    )
    panels.add(
        "Beat readiness per check",
        [
            (f"min by (check) (celery_readiness_check_up{s})", "{{check}}"),
            (f"min(celery_beat_ready{s})", "ready (all beats)"),
        ],
        description="1 = passing: broker (a PING) and scheduler (this beat sends and ticks).",
    )
    panels.add(
        "Runs sent by entry",
        [
            (
                f"sum by (entry) (increase(celery_beat_entry_sent_total{s}[$__rate_interval]))",
                "{{entry}}",
            )
        ],
    )
    panels.add(
        "Lateness p50 / p95 / p99 by entry",
        [
            (
                f"histogram_quantile({q}, sum by (entry, le) "
                f"(rate(celery_beat_entry_lateness_seconds_bucket{s}[$__rate_interval])))",
                f"p{int(q * 100)} {{{{entry}}}}",
            )
            for q in (0.5, 0.95, 0.99)
        ],
        unit="s",
        description="Publish time minus due time; the catch-up run after downtime is not in it.",
    )
    panels.add(
        "Missed, catch-up and failed runs",
        [
            (
                f"sum by (entry) (increase(celery_beat_entry_missed_total{s}[$__rate_interval]))",
                "missed {{entry}}",
            ),
            (
                f"sum by (entry) (increase(celery_beat_entry_catchup_total{s}[$__rate_interval]))",
                "catch-up {{entry}}",
            ),
            (
                "sum by (entry) "
                f"(increase(celery_beat_entry_send_errors_total{s}[$__rate_interval]))",
                "failed {{entry}}",
            ),
        ],
        description="Missed runs are counted for interval and crontab entries; after a crash "
        "the count is an upper bound (the schedule file syncs every few minutes).",
    )
    panels.add(
        "Entries: since last sent, until next due, interval",
        [
            (
                f"time() - max by (entry) (celery_beat_entry_last_sent_timestamp_seconds{s})",
                "since sent {{entry}}",
            ),
            (
                f"max by (entry) (celery_beat_entry_next_due_timestamp_seconds{s}) - time()",
                "until due {{entry}}",
            ),
            (f"max by (entry) (celery_beat_entry_interval_seconds{s})", "interval {{entry}}"),
        ],
        unit="s",
        width=16,
    )
    panels.add(
        "Beat processes",
        [(f"max by (instance, version, scheduler) (celery_beat_info{s})", "")],
        kind="table",
    )
