"""Prometheus recording and alerting rules, one file per area, in the monitoring-mixin shape.

Recording rules are named ``level:metric:operations``; every alert has
``summary``, ``description``, ``severity``, ``for`` and ``runbook_url``.
"Nothing happened" conditions use ``unless`` or ``absent()``, never ``== 0``
on a series that may not exist.
"""

from __future__ import annotations

from typing import Any

import yaml

from dashboards.config import broker_state, selector


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
