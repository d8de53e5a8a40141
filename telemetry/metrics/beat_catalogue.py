"""Every Prometheus metric ``celery beat`` exports, declared once (the worker's are in ``catalogue``).

A beat process serves its own registry on ``BEAT_METRICS_PORT``
(``telemetry.beat``). Sends are rare next to task deliveries, so the per-entry
series are ordinary prometheus-client metrics: an entry that leaves the
schedule has its children removed (``telemetry.beat.series``). ``entry`` is the
schedule entry's name, at most ``BEAT_MAX_ENTRIES`` of them; the rest count
under ``entry="other"``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from telemetry.metrics.catalogue import readiness_check_up

#: Publish time minus due time. A healthy beat sends within milliseconds of the
#: due time; a beat busy with other entries, or blocked on its broker for a
#: while, sends seconds or minutes late. Past 10 minutes the runs are better
#: counted as missed (a later run is due by then for most schedules).
LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

ENTRY_LABELS = ("entry",)


class BeatMetrics:
    """The beat's metric contract; names, types and labels are pinned by the dashboards and alerts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.info = Gauge(
            "celery_beat_info",
            "Identity of this beat; always 1, with its scheduler class.",
            ("version", "scheduler"),
            registry=registry,
        )
        self.active = Gauge(
            "celery_beat_active",
            "1 when this beat sends; 0 while it waits, for a scheduler lock (a standby) "
            "or for its broker at start.",
            registry=registry,
        )
        self.tick_timestamp = Gauge(
            "celery_beat_tick_timestamp_seconds",
            "When beat's loop last turned: the tick Celery's own stale check reads. Starts "
            "at the time beat started.",
            registry=registry,
        )
        self.liveness_timeout = Gauge(
            "celery_beat_liveness_timeout_seconds",
            "The tick age past which /livez fails (BEAT_LIVENESS_TIMEOUT); 0 turns the check off.",
            registry=registry,
        )
        self.instances = Gauge(
            "celery_beat_instances",
            "Beats of this app sending now, from their heartbeat keys on the broker; more "
            "than 1 runs every periodic task more than once.",
            registry=registry,
        )
        self.ready = Gauge(
            "celery_beat_ready",
            "1 when every readiness check of this beat passes.",
            registry=registry,
        )
        self.readiness_check_up = readiness_check_up(registry)
        self.entry_sent = Counter(
            "celery_beat_entry_sent",
            "Runs of the schedule entry published.",
            ("entry", "task", "queue"),
            registry=registry,
        )
        self.entry_send_errors = Counter(
            "celery_beat_entry_send_errors",
            "Runs of the schedule entry whose publish failed: Celery does not retry them, "
            "so those runs are lost.",
            ("entry", "task"),
            registry=registry,
        )
        self.entry_lateness = Histogram(
            "celery_beat_entry_lateness_seconds",
            "Publish time minus due time of each run sent; the catch-up run after downtime "
            "is counted apart, not observed here.",
            ENTRY_LABELS,
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.entry_catchup = Counter(
            "celery_beat_entry_catchup",
            "The one overdue run Celery sends for an entry when beat starts (or takes over) "
            "after its due time.",
            ENTRY_LABELS,
            registry=registry,
        )
        self.entry_missed = Counter(
            "celery_beat_entry_missed",
            "Due runs of an interval or crontab entry that were never sent: during downtime "
            "less the catch-up run, or while beat's loop was blocked.",
            ENTRY_LABELS,
            registry=registry,
        )
        self.entry_interval = Gauge(
            "celery_beat_entry_interval_seconds",
            "The entry's period; for a crontab, from its last due time to its next.",
            ENTRY_LABELS,
            registry=registry,
        )
        self.entry_last_sent = Gauge(
            "celery_beat_entry_last_sent_timestamp_seconds",
            "When the entry was last sent, as its schedule store has it.",
            ENTRY_LABELS,
            registry=registry,
        )
        self.entry_next_due = Gauge(
            "celery_beat_entry_next_due_timestamp_seconds",
            "When the entry is due next.",
            ENTRY_LABELS,
            registry=registry,
        )
