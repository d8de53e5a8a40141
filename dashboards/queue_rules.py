"""The queue rules: depth and age from the broker exporter, the broker-wide gauges, and the
exporter's own alerts."""

from __future__ import annotations

from typing import Any

from dashboards.config import broker_state, exporter_selector, selector
from dashboards.rules import alert, record

#: Broker-wide gauges of a worker's poller or the broker exporter, recorded as ``broker:<metric>:max``.
BROKER_WIDE = (
    "celery_deadletter_size",
    "celery_exhausted_size",
    "celery_broker_unacked_messages",
    "celery_broker_oldest_unacked_age_seconds",
    "celery_broker_visibility_timeout_seconds",
    "celery_queue_poll_last_success_timestamp_seconds",
)


def exporter_alerts(config: dict[str, Any]) -> list[dict[str, Any]]:
    """``CeleryBrokerExporterDown``, only where ``brokerExporter.enabled`` says one runs."""
    if not config["brokerExporter"]["enabled"]:
        return []
    up = f"up{exporter_selector(config)}"
    return [
        {
            "name": "celery-broker-exporter.alerts",
            "rules": [
                alert(
                    config,
                    "CeleryBrokerExporterDown",
                    f"absent({up}) or {up} == 0",
                    "warning",
                    "The Celery broker exporter is down or missing.",
                    "Nothing exports queue depth, age and dead letters while no worker runs: "
                    "no alert can see work waiting, and scaling from zero has no signal.",
                )
            ],
        }
    ]


def queue_rules(config: dict[str, Any]) -> dict[str, Any]:
    s = selector(config)
    e = exporter_selector(config)
    backlog = config["alerts"]["CeleryQueueBacklog"]
    idle = config["alerts"]["CeleryQueueNotConsumed"]["idle"]
    growing = config["alerts"]["CeleryDeadLettersGrowing"]
    return {
        "groups": [
            {
                "name": "celery-queue.rules",
                "rules": [
                    # Every worker and the broker exporter export the same broker
                    # state: aggregate with max.
                    record(
                        "queue:celery_queue_depth:max",
                        f"max by (queue) {broker_state(config, 'celery_queue_depth')}",
                    ),
                    record(
                        "queue:celery_queue_oldest_message_age_seconds:max",
                        "max by (queue) "
                        f"{broker_state(config, 'celery_queue_oldest_message_age_seconds')}",
                    ),
                    record(
                        "queue:celery_queue_depth:deriv10m",
                        f"max by (queue) (deriv(celery_queue_depth{s}[10m])\n"
                        f"  or deriv(celery_queue_depth{e}[10m]))",
                    ),
                    *(
                        record(f"broker:{metric}:max", f"max {broker_state(config, metric)}")
                        for metric in BROKER_WIDE
                    ),
                    # Demand in tasks, for scaling: waiting, plus held by workers and due.
                    record(
                        "queue:celery_capacity_demand:sum",
                        "queue:celery_queue_depth:max\n"
                        "+ on (queue) (\n"
                        f"    sum by (queue) (celery_tasks_active{s})\n"
                        f"  + sum by (queue) (celery_tasks_reserved{s})\n"
                        f"  - sum by (queue) (celery_tasks_eta_waiting{s})\n"
                        "  or queue:celery_queue_depth:max * 0\n"
                        ")",
                    ),
                    record(
                        f"queue:celery_task_started:increase{idle}",
                        f"sum by (queue) (increase(celery_task_started_total{s}[{idle}]))",
                    ),
                ],
            },
            {
                "name": "celery-queue.alerts",
                "rules": [
                    alert(
                        config,
                        "CeleryQueueBacklog",
                        "queue:celery_queue_oldest_message_age_seconds:max > "
                        f"{backlog['maxOldestAgeSeconds']}",
                        "warning",
                        "Queue {{ $labels.queue }} has messages waiting too long.",
                        "The oldest waiting message has been waiting more than "
                        f"{backlog['maxOldestAgeSeconds']} s.",
                    ),
                    alert(
                        config,
                        "CeleryQueueNotConsumed",
                        "queue:celery_queue_depth:max > 0\n"
                        "unless on (queue)\n"
                        "  (\n"
                        f"    max by (queue) (celery_worker_consumed_queue{s} and on (instance, job) up{s} == 1)\n"
                        f"    and on (queue) queue:celery_task_started:increase{idle} > 0\n"
                        "  )",
                        "critical",
                        "Queue {{ $labels.queue }} has messages and nothing consumes it.",
                        "Messages are waiting, and either no up worker consumes the queue "
                        f"(celery_worker_consumed_queue) or no task started on it for {idle}.",
                    ),
                    alert(
                        config,
                        "CeleryDeadLettersGrowing",
                        "sum by (queue, reason) (increase(celery_messages_dead_lettered_total"
                        f"{s}[{growing['window']}])) >= {growing['minIncrease']}",
                        "warning",
                        "Messages from {{ $labels.queue }} are being dead-lettered ({{ $labels.reason }}).",
                        f"At least {growing['minIncrease']} message(s) dead-lettered in "
                        f"{growing['window']}. Inspect them with `python -m telemetry.failed -A worker "
                        "list --kind dead_letter` or the broker exporter's /api/v1/failed.",
                    ),
                ],
            },
            *exporter_alerts(config),
        ]
    }
