"""Failed work on the overview: both kinds held, what goes in, and what operators put back.

Dead letters and exhausted tasks are held on the broker (``telemetry.failed``);
their sizes are broker state, from whoever polls (``broker:<metric>:max``). What
is requeued or deleted is counted by the process that acted, the broker
exporter, whose operator API does it. ``CeleryTaskExhausted`` (rules/tasks.yml)
and ``CeleryDeadLettersGrowing`` (rules/queues.yml) alert on what goes in.
"""

from __future__ import annotations

from typing import Any

from dashboards.panels import INSTANCE, QUEUE, Panels


def failed_work_panels(config: dict[str, Any], panels: Panels) -> None:
    s = config["selectors"]["workerSelector"]
    e = config["selectors"]["exporterSelector"]
    panels.row("Failed work")
    panels.add(
        "Failed work held",
        [
            ("broker:celery_deadletter_size:max", "dead letters"),
            ("broker:celery_exhausted_size:max", "exhausted"),
        ],
        description="Records of both kinds on the broker, shared by every queue: dead letters "
        "(messages the worker could not run) and exhausted tasks (failed after their last "
        "retry). List, requeue or delete them with the broker exporter's /api/v1/failed.",
    )
    panels.add(
        "Dead-lettered by reason",
        [
            (
                f"sum by (queue, reason) (increase(celery_messages_dead_lettered_total{{{s}, {QUEUE}, {INSTANCE}}}[$__rate_interval]))",
                "{{queue}} {{reason}}",
            )
        ],
    )
    panels.add(
        "Exhausted by task",
        [
            (
                f"sum by (queue, task) (increase(celery_task_exhausted_total{{{s}, {QUEUE}, {INSTANCE}}}[$__rate_interval]))",
                "{{queue}} {{task}}",
            )
        ],
        description="Deliveries that failed for good with their message acknowledged.",
    )
    panels.add(
        "Requeued and operator actions",
        [
            (
                f"sum by (kind, queue, task) (increase(celery_failed_requeued_total{{{e}}}[$__rate_interval]))",
                "requeued {{kind}} {{queue}} {{task}}",
            ),
            (
                f"sum by (action) (increase(celery_ops_actions_total{{{e}}}[$__rate_interval]))",
                "{{action}}",
            ),
        ],
        width=16,
        description="Counted by the broker exporter, whose operator API acted; the CLI's "
        "actions are in the audit stream only.",
    )
    panels.add(
        "Exhausted-set write errors",
        [
            (
                f"sum by (instance) (increase(celery_exhausted_write_errors_total{{{s}, {INSTANCE}}}[$__rate_interval]))",
                "{{instance}}",
            )
        ],
        description="Exhausted tasks a worker could not store on the broker: they are logged, "
        "and lost to the set.",
    )
