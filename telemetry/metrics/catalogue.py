"""Every Prometheus metric the worker exports, declared once.

Metrics are recorded in the worker's main process (see ``telemetry.metrics.recorder``),
so one ordinary ``CollectorRegistry`` serves them: prometheus-client's
multiprocess mode would drop exemplars, which the histograms carry. The
per-delivery families are plain numbers behind a collector
(``telemetry.metrics.task_series``); the rest are prometheus-client metrics.
Construct :class:`WorkerMetrics` with the registry to register into; tests
pass a fresh one.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from telemetry.delivery.observers import OUTCOMES
from telemetry.metrics.task_series import (
    QUEUE_LABELS,
    TASK_LABELS,
    Family,
    HeldReading,
    TaskFamilies,
    TaskSeriesCollector,
)

#: Task execution time. Time limits default to 300/360 s and may be raised, so
#: the buckets run from 5 ms to 1 h (the contract asks for at least 30 min).
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)  # fmt: skip
#: Time from publish to start. A healthy queue waits milliseconds, and a backlog
#: can wait an hour before alerts page, which is the runtime range again. The
#: wait-time SLO threshold must be one of these bounds.
QUEUE_WAIT_BUCKETS = RUNTIME_BUCKETS
#: Redis PING on loopback is ~0.1 ms; seconds mean trouble (the probe times out first).
BROKER_PING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: The health task's publish-to-completion round trip, bounded by the probe timeout.
HEALTH_ROUNDTRIP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

#: The per-(queue, task) families, recorded on every delivery: plain numbers
#: behind a collector (see ``telemetry.metrics.task_series`` for why).
TASK_FAMILIES = TaskFamilies(
    received=Family(
        CounterMetricFamily,
        "celery_task_received",
        "Task deliveries the worker took from the broker.",
        TASK_LABELS,
    ),
    started=Family(
        CounterMetricFamily,
        "celery_task_started",
        "Task executions started in a pool process.",
        TASK_LABELS,
    ),
    finished=Family(
        CounterMetricFamily,
        "celery_task_finished",
        "Task deliveries ended, by outcome; every delivery ends in exactly one.",
        (*TASK_LABELS, "outcome"),
    ),
    runtime=Family(
        HistogramMetricFamily,
        "celery_task_runtime_seconds",
        "Execution time of every task that ran, measured in the main process from start to outcome.",
        TASK_LABELS,
        RUNTIME_BUCKETS,
    ),
    queue_wait=Family(
        HistogramMetricFamily,
        "celery_task_queue_wait_seconds",
        "Time from publish to start, minus any ETA or countdown delay.",
        TASK_LABELS,
        QUEUE_WAIT_BUCKETS,
    ),
    active=Family(GaugeMetricFamily, "celery_tasks_active", "Tasks executing now.", QUEUE_LABELS),
    reserved=Family(
        GaugeMetricFamily,
        "celery_tasks_reserved",
        "Tasks received and not started yet, including ETA tasks waiting.",
        QUEUE_LABELS,
    ),
    redelivered=Family(
        CounterMetricFamily,
        "celery_task_redelivered",
        "Deliveries of messages the broker had restored (delivery_info redelivered).",
        TASK_LABELS,
    ),
    duplicate_executions=Family(
        CounterMetricFamily,
        "celery_task_duplicate_executions",
        "Executions of a (task id, retries) pair this worker had already started "
        "within DUPLICATE_WINDOW.",
        TASK_LABELS,
    ),
    eta_beyond_visibility=Family(
        CounterMetricFamily,
        "celery_task_eta_beyond_visibility",
        "Deliveries whose ETA lies beyond the visibility timeout less the hard time "
        "limit: the broker will restore them and they will run twice.",
        TASK_LABELS,
    ),
    eta_waiting=Family(
        GaugeMetricFamily,
        "celery_tasks_eta_waiting",
        "Held tasks whose ETA is still in the future (a subset of celery_tasks_reserved).",
        QUEUE_LABELS,
    ),
    oldest_running=Family(
        GaugeMetricFamily,
        "celery_tasks_oldest_running_seconds",
        "Age of the oldest task executing now; 0 when none.",
        QUEUE_LABELS,
    ),
    outcomes=OUTCOMES,
)


def task_published(registry: CollectorRegistry) -> Counter:
    """``celery_task_published_total``: in a worker's registry, or a publishing process's."""
    return Counter(
        "celery_task_published",
        "Task messages published by this process.",
        TASK_LABELS,
        registry=registry,
    )


def readiness_check_up(registry: CollectorRegistry) -> Gauge:
    """``celery_readiness_check_up{check}``: in a worker's, the broker exporter's or a beat's registry."""
    return Gauge(
        "celery_readiness_check_up",
        "1 when the readiness check passed last time, else 0.",
        ("check",),
        registry=registry,
    )


class BrokerMetrics:
    """What the broker holds, read by a worker's poller or by the broker exporter
    (``telemetry.broker_exporter``), and the broker check: the same names from both."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue_depth = Gauge(
            "celery_queue_depth",
            "Messages waiting in Redis, summed over priority sub-lists.",
            ("queue",),
            registry=registry,
        )
        self.queue_oldest_age = Gauge(
            "celery_queue_oldest_message_age_seconds",
            "Age of the oldest waiting message; 0 when the queue is empty.",
            ("queue",),
            registry=registry,
        )
        self.queue_poll_last_success = Gauge(
            "celery_queue_poll_last_success_timestamp_seconds",
            "When queue depth and age were last read successfully.",
            registry=registry,
        )
        self.unacked_messages = Gauge(
            "celery_broker_unacked_messages",
            "Messages delivered to some worker and not acknowledged yet, fleet-wide.",
            registry=registry,
        )
        self.oldest_unacked_age = Gauge(
            "celery_broker_oldest_unacked_age_seconds",
            "Age of the oldest unacknowledged delivery; 0 when none. At the visibility "
            "timeout, the broker restores it.",
            registry=registry,
        )
        self.visibility_timeout = Gauge(
            "celery_broker_visibility_timeout_seconds",
            "The broker's visibility timeout (broker_transport_options).",
            registry=registry,
        )
        self.deadletter_size = Gauge(
            "celery_deadletter_size", "Records in the dead-letter set.", registry=registry
        )
        self.exhausted_size = Gauge(
            "celery_exhausted_size",
            "Records in the exhausted set: tasks whose last attempt failed.",
            registry=registry,
        )
        self.readiness_check_up = readiness_check_up(registry)
        self.ping = Histogram(
            "celery_broker_ping_seconds",
            "Redis PING round trip on a fresh connection.",
            buckets=BROKER_PING_BUCKETS,
            registry=registry,
        )


class WorkerMetrics:
    """The metric contract; names, types and labels are pinned by dashboards and alerts."""

    def __init__(
        self, registry: CollectorRegistry, held: Callable[[], HeldReading] | None = None
    ) -> None:
        """``held``: what the worker holds, read at each render (``telemetry.metrics.held``)."""
        self.registry = registry
        self.task_published = task_published(registry)
        self.task_exceptions = Counter(
            "celery_task_exceptions",
            "Failed task deliveries by exception class name.",
            (*TASK_LABELS, "exception"),
            registry=registry,
        )
        self.tasks = TaskSeriesCollector(TASK_FAMILIES, registry, held)
        self.broker = BrokerMetrics(registry)
        self.messages_dead_lettered = Counter(
            "celery_messages_dead_lettered",
            "Messages moved to the dead-letter list, by reason.",
            ("queue", "reason"),
            registry=registry,
        )
        self.worker_consumed_queue = Gauge(
            "celery_worker_consumed_queue",
            "One series per queue this worker consumes.",
            ("queue",),
            registry=registry,
        )
        self.worker_pool_processes = Gauge(
            "celery_worker_pool_processes",
            "Pool processes of this worker now (pool_grow, pool_shrink and --autoscale change it).",
            registry=registry,
        )
        self.worker_pool_max_processes = Gauge(
            "celery_worker_pool_max_processes",
            "The most pool processes this worker may run: the --autoscale maximum, else its pool size.",
            registry=registry,
        )
        self.worker_pool_busy = Gauge(
            "celery_worker_pool_busy", "Pool processes executing a task now.", registry=registry
        )
        self.worker_info = Gauge(
            "celery_worker_info",
            "Identity of this worker; always 1.",
            ("version", "pool", "hostname"),
            registry=registry,
        )
        self.worker_ready = Gauge(
            "celery_worker_ready",
            "1 when every required readiness check passes.",
            registry=registry,
        )
        self.health_check_roundtrip = Histogram(
            "celery_health_check_roundtrip_seconds",
            "Health task round trip, publish to completion.",
            buckets=HEALTH_ROUNDTRIP_BUCKETS,
            registry=registry,
        )
        self.health_check_last_success = Gauge(
            "celery_health_check_last_success_timestamp_seconds",
            "When the health task last completed; starts at the worker's start time.",
            registry=registry,
        )
