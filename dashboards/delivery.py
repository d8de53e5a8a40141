"""At-least-once delivery: its alert rules (rules/delivery.yml) and the overview's "Delivery" row.

Redeliveries, duplicate executions, ETAs beyond the visibility timeout, tasks
running too long, and unacked messages nearing the visibility timeout. RUNBOOK.md
says what to do about each.
"""

from __future__ import annotations

from typing import Any

from dashboards.config import selector
from dashboards.panels import INSTANCE, QUEUE, Panels
from dashboards.rules import alert, record


def delivery_rules(config: dict[str, Any]) -> dict[str, Any]:
    s = selector(config)
    alerts = config["alerts"]
    redeliveries = alerts["CeleryTaskRedeliveriesHigh"]
    window = redeliveries["window"]
    duplicates = alerts["CeleryTaskDuplicateExecutions"]
    eta = alerts["CeleryTaskEtaBeyondVisibility"]
    hung = alerts["CeleryTaskHung"]
    unacked = alerts["CeleryUnackedNearVisibilityTimeout"]
    redelivered = f"queue:celery_task_redelivered:increase{window}"
    received = f"queue:celery_task_received:increase{window}"
    return {
        "groups": [
            {
                "name": "celery-delivery.rules",
                "rules": [
                    record(
                        redelivered,
                        f"sum by (queue) (increase(celery_task_redelivered_total{s}[{window}]))",
                    ),
                    record(
                        received,
                        f"sum by (queue) (increase(celery_task_received_total{s}[{window}]))",
                    ),
                    record(
                        "queue:celery_tasks_oldest_running_seconds:max",
                        f"max by (queue) (celery_tasks_oldest_running_seconds{s})",
                    ),
                ],
            },
            {
                "name": "celery-delivery.alerts",
                "rules": [
                    alert(
                        config,
                        "CeleryTaskRedeliveriesHigh",
                        f"{redelivered} / {received} > {redeliveries['maxRatio']}\n"
                        f"and on (queue) {received} >= {redeliveries['minReceived']}",
                        "warning",
                        "Many deliveries on {{ $labels.queue }} are redeliveries.",
                        f"More than {redeliveries['maxRatio']:.0%} of the deliveries on the queue "
                        f"over {window} were messages the broker had restored (with at least "
                        f"{redeliveries['minReceived']} received): workers die, lose their "
                        "connection, or hold messages past the visibility timeout. Each "
                        "redelivery may run a task again.",
                    ),
                    alert(
                        config,
                        "CeleryTaskDuplicateExecutions",
                        "sum by (queue, task) (increase(celery_task_duplicate_executions_total"
                        f"{s}[{duplicates['window']}])) > 0",
                        "warning",
                        "Task {{ $labels.task }} on {{ $labels.queue }} ran twice.",
                        "A worker started the same task id and retry count twice within its "
                        f"duplicate window, over the last {duplicates['window']}. Tasks that are "
                        "not idempotent did their work twice.",
                    ),
                    alert(
                        config,
                        "CeleryTaskEtaBeyondVisibility",
                        "sum by (queue, task) (increase(celery_task_eta_beyond_visibility_total"
                        f"{s}[{eta['window']}])) > 0",
                        "warning",
                        "Task {{ $labels.task }} is scheduled beyond the visibility timeout.",
                        "A delivery's ETA or countdown is further away than the broker's "
                        "visibility timeout less the task's hard time limit: the broker will "
                        "restore the message while a worker holds it, and it will run twice.",
                    ),
                    alert(
                        config,
                        "CeleryTaskHung",
                        "queue:celery_tasks_oldest_running_seconds:max > "
                        f"{hung['maxRunningSeconds']}",
                        "warning",
                        "A task on {{ $labels.queue }} has been running too long.",
                        "The oldest execution in progress on the queue has run for more than "
                        f"{hung['maxRunningSeconds']} s: it may be stuck, and only a hard time "
                        "limit, if it has one, will end it.",
                    ),
                    alert(
                        config,
                        "CeleryUnackedNearVisibilityTimeout",
                        "broker:celery_broker_oldest_unacked_age_seconds:max\n"
                        f"> {unacked['maxRatio']} * broker:celery_broker_visibility_timeout_seconds:max",
                        "warning",
                        "An unacknowledged message nears the visibility timeout.",
                        "The oldest message delivered and not acknowledged is older than "
                        f"{unacked['maxRatio']:.0%} of the visibility timeout: when it reaches "
                        "it, the broker restores the message and another worker runs it again.",
                    ),
                ],
            },
        ]
    }


def delivery_panels(config: dict[str, Any], panels: Panels) -> None:
    s = config["selectors"]["workerSelector"]
    series = f"{{{s}, {QUEUE}, {INSTANCE}}}"
    panels.row("Delivery")
    panels.add(
        "Redelivered and ETA beyond visibility",
        [
            (
                f"sum by (queue) (increase(celery_task_redelivered_total{series}[$__rate_interval]))",
                "redelivered {{queue}}",
            ),
            (
                "sum by (queue) (increase(celery_task_eta_beyond_visibility_total"
                f"{series}[$__rate_interval]))",
                "ETA beyond visibility {{queue}}",
            ),
        ],
        description="Deliveries of restored messages, and deliveries that will be restored "
        "while they wait for their ETA.",
    )
    panels.add(
        "Duplicate executions",
        [
            (
                "sum by (queue, task) (increase(celery_task_duplicate_executions_total"
                f"{series}[$__rate_interval]))",
                "{{queue}} {{task}}",
            )
        ],
        description="A (task id, retries) pair a worker had already started within "
        "DUPLICATE_WINDOW. Seen per worker; redeliveries are the fleet-wide signal.",
    )
    panels.add(
        "ETA tasks waiting",
        [(f"sum by (queue) (celery_tasks_eta_waiting{series})", "{{queue}}")],
        description="Held by workers until their ETA; part of the reserved tasks, never in "
        "the queue depth.",
    )
    panels.add(
        "Unacked messages",
        [("broker:celery_broker_unacked_messages:max", "unacked")],
        description="Delivered to some worker and not acknowledged yet, fleet-wide, from "
        "the workers' polls or the broker exporter.",
    )
    panels.add(
        "Oldest unacked vs visibility timeout",
        [
            ("broker:celery_broker_oldest_unacked_age_seconds:max", "oldest unacked"),
            ("broker:celery_broker_visibility_timeout_seconds:max", "visibility timeout"),
        ],
        unit="s",
        description="At the visibility timeout the broker restores the message and it runs again.",
    )
    panels.add(
        "Oldest running task",
        [(f"max by (queue) (celery_tasks_oldest_running_seconds{series})", "{{queue}}")],
        unit="s",
        description="Age of the oldest execution in progress; a task stuck in a pool "
        "process shows here long before its hard time limit.",
    )
