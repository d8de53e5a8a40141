"""Prometheus recording and alerting rules, one file per area, in the monitoring-mixin shape.

Recording rules are named ``level:metric:operations``; every alert has
``summary``, ``description``, ``severity``, ``for`` and ``runbook_url``.
"Nothing happened" conditions use ``unless`` or ``absent()``, never ``== 0``
on a series that may not exist.
"""

from __future__ import annotations

from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from dashboards.config import broker_state, exporter_selector, selector


def alert(
    config: dict[str, Any],
    name: str,
    expr: str,
    severity: str,
    summary: str,
    description: str,
    duration: str | None = None,
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration or config["alerts"][name]["for"],
        "labels": {"severity": severity},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{config['dashboards']['runbookBase']}#{name.lower()}",
        },
    }


def record(name: str, expr: str) -> dict[str, Any]:
    return {"record": name, "expr": expr}


def worker_down(config: dict[str, Any]) -> str:
    """A target that fails its scrape; with ``minWorkers`` above 0, also too few or none at all.
    With 0 the fleet may scale to zero on purpose, and only a failing scrape is down."""
    up = f"up{selector(config)}"
    minimum = int(config["minWorkers"])
    if minimum == 0:
        return f"{up} == 0"
    return f"{up} == 0\nor absent({up})\nor count({up} == 1) < {minimum}"


def worker_rules(config: dict[str, Any]) -> dict[str, Any]:
    s = selector(config)
    saturated = config["alerts"]["CeleryWorkerSaturated"]
    stale = config["alerts"]["CeleryHealthCheckStale"]
    window = saturated["window"]
    return {
        "groups": [
            {
                "name": "celery-worker.rules",
                "rules": [
                    record(
                        "instance:celery_worker_pool_utilization:ratio",
                        f"celery_worker_pool_busy{s} / celery_worker_pool_processes{s}",
                    ),
                    record(
                        f"instance:celery_worker_pool_utilization:avg{window}",
                        f"avg_over_time(instance:celery_worker_pool_utilization:ratio[{window}])",
                    ),
                ],
            },
            {
                "name": "celery-worker.alerts",
                "rules": [
                    alert(
                        config,
                        "CeleryWorkerDown",
                        worker_down(config),
                        "critical",
                        "Celery workers are down or missing.",
                        "A worker target fails its scrape"
                        + (
                            f", no worker target exists at all, or fewer than "
                            f"{config['minWorkers']} worker(s) are up"
                            if int(config["minWorkers"])
                            else ""
                        )
                        + ". Tasks may not be consumed.",
                    ),
                    alert(
                        config,
                        "CeleryWorkerNotReady",
                        f"celery_worker_ready{s} == 0",
                        "warning",
                        "Celery worker {{ $labels.instance }} is not ready.",
                        "A required readiness check has been failing; /readyz answers 503. "
                        "See celery_readiness_check_up for which one.",
                    ),
                    alert(
                        config,
                        "CeleryBrokerUnreachable",
                        broker_state(config, "celery_readiness_check_up", 'check="broker"')
                        + " == 0",
                        "critical",
                        "{{ $labels.instance }} cannot reach the Redis broker.",
                        "The broker check of a worker or of the broker exporter (a PING on a "
                        "fresh connection) fails. Nothing can be consumed or published.",
                    ),
                    alert(
                        config,
                        "CeleryHealthCheckStale",
                        f"time() - celery_health_check_last_success_timestamp_seconds{s} "
                        f"> {stale['maxAgeSeconds']}",
                        "warning",
                        "Worker {{ $labels.instance }} has not completed a health task recently.",
                        "The health task round trip (publish to the worker's own queue, run, "
                        f"complete) last succeeded more than {stale['maxAgeSeconds']} s ago: the "
                        "worker's consumer or pool is stuck.",
                    ),
                    alert(
                        config,
                        "CeleryWorkerSaturated",
                        f"instance:celery_worker_pool_utilization:avg{window} >= "
                        f"{saturated['minBusyRatio']}\n"
                        "and on (instance, job)\n"
                        f"  (celery_worker_consumed_queue{s}\n"
                        "   * on (queue) group_left ()\n"
                        "   (queue:celery_queue_depth:deriv10m > 0))",
                        "warning",
                        "Worker {{ $labels.instance }} is saturated while its queues grow.",
                        f"Its pool has been busy at least {saturated['minBusyRatio']:.0%} of the "
                        f"time over {window} while a queue it consumes keeps growing. Add "
                        "workers or concurrency.",
                    ),
                ],
            },
        ]
    }


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


def task_rules(config: dict[str, Any]) -> dict[str, Any]:
    s = selector(config)
    failure = config["alerts"]["CeleryTaskFailureRateHigh"]
    exhausted = config["alerts"]["CeleryTaskExhausted"]
    window = failure["window"]
    finished = f"queue_task:celery_task_finished:rate{window}"
    return {
        "groups": [
            {
                "name": "celery-task.rules",
                "rules": [
                    record(
                        finished,
                        "sum by (queue, task, outcome) "
                        f"(rate(celery_task_finished_total{s}[{window}]))",
                    ),
                    record(
                        f"queue_task:celery_task_failures:ratio_rate{window}",
                        f'sum by (queue, task) ({finished}{{outcome="failed"}})\n'
                        f'/ sum by (queue, task) ({finished}{{outcome=~"succeeded|failed"}})',
                    ),
                ],
            },
            {
                "name": "celery-task.alerts",
                "rules": [
                    alert(
                        config,
                        "CeleryTaskFailureRateHigh",
                        f"queue_task:celery_task_failures:ratio_rate{window} > {failure['maxRatio']}\n"
                        "and on (queue, task)\n"
                        f'  sum by (queue, task) ({finished}{{outcome=~"succeeded|failed"}}) '
                        f">= {failure['minRatePerSecond']}",
                        "warning",
                        "Task {{ $labels.task }} on {{ $labels.queue }} fails too often.",
                        f"More than {failure['maxRatio']:.0%} of its executions failed over "
                        f"{window} (with at least "
                        f"{failure['minRatePerSecond']} finished per second).",
                    ),
                    alert(
                        config,
                        "CeleryTaskExhausted",
                        "sum by (queue, task) (increase(celery_task_exhausted_total"
                        f"{s}[{exhausted['window']}])) > 0",
                        "warning",
                        "Task {{ $labels.task }} on {{ $labels.queue }} failed for good.",
                        "A delivery of it failed after its last retry, or at its hard time "
                        f"limit, over the last {exhausted['window']}, and its message was "
                        "acknowledged: nothing runs it again unless it is requeued from the "
                        "exhausted set (GET /api/v1/failed/groups?kind=exhausted on the broker "
                        "exporter).",
                    ),
                ],
            },
        ]
    }


def slo_windows(config: dict[str, Any]) -> list[str]:
    slo = config["slo"]["queueWait"]
    windows: list[str] = []
    for level in (*slo["page"], *slo["ticket"]):
        for window in (level["short"], level["long"]):
            if window not in windows:
                windows.append(window)
    return windows


def slo_rules(config: dict[str, Any]) -> dict[str, Any]:
    # The exposition's own spelling of the bound (30 -> "30.0").
    le = floatToGoString(float(config["slo"]["queueWait"]["thresholdSeconds"]))  # type: ignore[no-untyped-call]
    s_bucket = selector(config, f'le="{le}"')
    s = selector(config)
    slo = config["slo"]["queueWait"]
    budget = round(1 - float(slo["target"]), 10)
    recording = [
        record(
            f"queue:celery_task_queue_wait_slo_burn:rate{window}",
            f"(\n  1 - sum by (queue) (rate(celery_task_queue_wait_seconds_bucket{s_bucket}[{window}]))\n"
            f"    / sum by (queue) (rate(celery_task_queue_wait_seconds_count{s}[{window}]))\n"
            f") / {budget}",
        )
        for window in slo_windows(config)
    ]

    def burn(levels: list[dict[str, Any]]) -> str:
        return "\nor\n".join(
            f"(queue:celery_task_queue_wait_slo_burn:rate{level['long']} > {level['burnRate']}\n"
            f" and queue:celery_task_queue_wait_slo_burn:rate{level['short']} > {level['burnRate']})"
            for level in levels
        )

    description = (
        "Tasks on {{ $labels.queue }} wait longer than "
        f"{slo['thresholdSeconds']} s too often: the error budget of the {slo['target']:.2%} "
        "objective is burning faster than the burn-rate thresholds allow."
    )
    return {
        "groups": [
            {"name": "celery-slo.rules", "rules": recording},
            {
                "name": "celery-slo.alerts",
                "rules": [
                    alert(
                        config,
                        "CeleryQueueWaitSLOBurn",
                        burn(slo["page"]),
                        "critical",
                        "Queue wait SLO on {{ $labels.queue }} is burning fast.",
                        description,
                        duration=slo["for"],
                    ),
                    alert(
                        config,
                        "CeleryQueueWaitSLOBurn",
                        burn(slo["ticket"]),
                        "ticket",
                        "Queue wait SLO on {{ $labels.queue }} is burning.",
                        description,
                        duration=slo["for"],
                    ),
                ],
            },
        ]
    }


class _BlockDumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_presenter)


def dump_rules(rules: dict[str, Any], source: str = "dashboards/config.yaml") -> str:
    header = f"# Generated by `python -m dashboards.generate` from {source}; do not edit.\n"
    return header + yaml.dump(rules, Dumper=_BlockDumper, sort_keys=False, width=1000)


# --- dashboards --------------------------------------------------------------
