"""The failed-work metrics: exhausted tasks in the worker's registry, and the operator
API's actions in the registry of the process that acted. One declaration each, as in
``telemetry.metrics.catalogue``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from telemetry.metrics.shared_counter import SharedCounter, SharedCounterCollector
from telemetry.metrics.task_series import TASK_LABELS


class ExhaustedMetrics:
    """The worker's exhausted tasks (``telemetry.failed.exhausted``), in its registry.

    Write errors happen in pool processes as well as in the main process, so their
    count lives in shared memory made before the pool forks
    (:class:`SharedCounter`) and is read at scrape time.
    """

    def __init__(self, registry: CollectorRegistry, write_errors: SharedCounter) -> None:
        self.task_exhausted = Counter(
            "celery_task_exhausted",
            "Task deliveries that failed for good with their message acknowledged: "
            "an exception after the last retry, or an acknowledged hard time limit.",
            TASK_LABELS,
            registry=registry,
        )
        self.write_errors = write_errors
        registry.register(
            SharedCounterCollector(
                "celery_exhausted_write_errors",
                "Exhausted-task records the broker did not store.",
                write_errors,
            )
        )


class OpsMetrics:
    """The operator API's actions, in the registry of the process that acted (the broker exporter)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.failed_requeued = Counter(
            "celery_failed_requeued",
            "Failed-work records whose message was put back on its queue, by kind.",
            ("kind", *TASK_LABELS),
            registry=registry,
        )
        self.ops_actions = Counter(
            "celery_ops_actions",
            "Write requests the operator API carried out, by action (dry runs apart).",
            ("action",),
            registry=registry,
        )
