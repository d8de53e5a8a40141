"""Generate the Prometheus rule files and Grafana dashboards from dashboards/config.yaml.

    .venv/bin/python -m dashboards.generate          # write the files (make dashboards)
    .venv/bin/python -m dashboards.generate --check  # exit 1 if any committed file differs

Rules follow the monitoring-mixin shape: one file per area, recording rules
named ``level:metric:operations``, alerts with ``summary``, ``description``,
``severity``, ``for`` and ``runbook_url``. "Nothing happened" conditions use
``unless`` or ``absent()``, never ``== 0`` on a series that may not exist.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString

from telemetry.catalogue import QUEUE_WAIT_BUCKETS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = HERE / "config.yaml"
RULES_DIR = HERE / "rules"
GRAFANA_DIR = HERE / "grafana"
#: Matchers every dashboard query carries besides the worker selector.
QUEUE = 'queue=~"$queue"'
TASK = 'task=~"$task"'
INSTANCE = 'instance=~"$instance"'


class ConfigError(ValueError):
    pass


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    threshold = float(config["slo"]["queueWait"]["thresholdSeconds"])
    if threshold not in QUEUE_WAIT_BUCKETS:
        raise ConfigError(
            f"slo.queueWait.thresholdSeconds: {threshold:g} is not a bucket bound of "
            f"celery_task_queue_wait_seconds {list(QUEUE_WAIT_BUCKETS)}"
        )
    target = float(config["slo"]["queueWait"]["target"])
    if not 0 < target < 1:
        raise ConfigError(f"slo.queueWait.target: {target} must be between 0 and 1")
    return config


def selector(config: dict[str, Any], *extra: str) -> str:
    return "{" + ", ".join([config["selectors"]["workerSelector"], *extra]) + "}"


# --- rules -------------------------------------------------------------------


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


def worker_rules(config: dict[str, Any]) -> dict[str, Any]:
    s = selector(config)
    up = f"up{s}"
    saturated = config["alerts"]["CeleryWorkerSaturated"]
    stale = config["alerts"]["CeleryHealthCheckStale"]
    window = saturated["window"]
    broker_check = selector(config, 'check="broker"')
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
                        f"{up} == 0\nor absent({up})\n"
                        f"or count({up} == 1) < {int(config['minWorkers'])}",
                        "critical",
                        "Celery workers are down or missing.",
                        "A worker target fails its scrape, no worker target exists at all, or "
                        f"fewer than {config['minWorkers']} worker(s) are up. Tasks may not be "
                        "consumed.",
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
                        f"celery_readiness_check_up{broker_check} == 0",
                        "critical",
                        "Worker {{ $labels.instance }} cannot reach the Redis broker.",
                        "The broker readiness check (a PING on a fresh connection) fails. "
                        "Nothing can be consumed or published.",
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


def queue_rules(config: dict[str, Any]) -> dict[str, Any]:
    s = selector(config)
    backlog = config["alerts"]["CeleryQueueBacklog"]
    idle = config["alerts"]["CeleryQueueNotConsumed"]["idle"]
    growing = config["alerts"]["CeleryDeadLettersGrowing"]
    return {
        "groups": [
            {
                "name": "celery-queue.rules",
                "rules": [
                    # Every worker exports the same depth and age: aggregate with max.
                    record(
                        "queue:celery_queue_depth:max", f"max by (queue) (celery_queue_depth{s})"
                    ),
                    record(
                        "queue:celery_queue_oldest_message_age_seconds:max",
                        f"max by (queue) (celery_queue_oldest_message_age_seconds{s})",
                    ),
                    record(
                        "queue:celery_queue_depth:deriv10m",
                        f"max by (queue) (deriv(celery_queue_depth{s}[10m]))",
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
                        f"{growing['window']}. Inspect them with `python -m worker.deadletters list`.",
                    ),
                ],
            },
        ]
    }


def task_rules(config: dict[str, Any]) -> dict[str, Any]:
    s = selector(config)
    failure = config["alerts"]["CeleryTaskFailureRateHigh"]
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


RULE_FILES = {
    "workers.yml": worker_rules,
    "queues.yml": queue_rules,
    "tasks.yml": task_rules,
    "slo.yml": slo_rules,
}


class _BlockDumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_presenter)


def dump_rules(rules: dict[str, Any]) -> str:
    header = (
        "# Generated by `python -m dashboards.generate` from dashboards/config.yaml; do not edit.\n"
    )
    return header + yaml.dump(rules, Dumper=_BlockDumper, sort_keys=False, width=1000)


# --- dashboards --------------------------------------------------------------


class Panels:
    """Lays panels out on Grafana's 24-column grid with unique ids."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_height = 0

    def _place(self, width: int, height: int) -> dict[str, int]:
        if self.x + width > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        position = {"x": self.x, "y": self.y, "w": width, "h": height}
        self.x += width
        self.row_height = max(self.row_height, height)
        return position

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        self.y += 1

    def add(
        self,
        title: str,
        targets: list[tuple[str, str]],
        *,
        unit: str = "short",
        kind: str = "timeseries",
        width: int = 8,
        height: int = 8,
        exemplars: bool = False,
        description: str = "",
    ) -> None:
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": self._place(width, height),
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": [
                {
                    "refId": chr(ord("A") + index),
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "expr": expr,
                    "legendFormat": legend,
                    "exemplar": exemplars,
                    **({"format": "table", "instant": True} if kind == "table" else {}),
                }
                for index, (expr, legend) in enumerate(targets)
            ],
        }
        if kind == "table":
            panel["transformations"] = [{"id": "labelsToFields", "options": {}}]
        self.panels.append(panel)


def variables(config: dict[str, Any]) -> list[dict[str, Any]]:
    s = config["selectors"]["workerSelector"]

    def query_variable(name: str, query: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": name,
            "type": "query",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": f"{name}-values"},
            "definition": query,
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
        }

    return [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        },
        query_variable("instance", f"label_values(up{{{s}}}, instance)"),
        query_variable("queue", f"label_values(celery_task_finished_total{{{s}}}, queue)"),
        query_variable(
            "task", f'label_values(celery_task_finished_total{{{s}, queue=~"$queue"}}, task)'
        ),
    ]


def dashboard(config: dict[str, Any], uid: str, title: str, panels: Panels) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["celery", "jobpilot"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": config["dashboards"]["refresh"],
        "time": {"from": f"now-{config['dashboards']['timeRange']}", "to": "now"},
        "timezone": "browser",
        "templating": {"list": variables(config)},
        "annotations": {"list": []},
        "links": [],
        "panels": panels.panels,
    }


def quantiles(metric: str, labels: str, by: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{labels}}}[$__rate_interval])))",
            f"p{int(q * 100)} {{{{{by.split(', ')[-1]}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def task_signals(config: dict[str, Any], panels: Panels, by: str) -> None:
    """Throughput, failures, wait and runtime, grouped ``by`` queue or task."""
    s = config["selectors"]["workerSelector"]
    labels = f"{s}, {QUEUE}, {TASK}, {INSTANCE}"
    legend = "{{" + by + "}}"
    panels.add(
        "Throughput by outcome",
        [
            (
                f"sum by ({by}, outcome) (rate(celery_task_finished_total{{{labels}}}[$__rate_interval]))",
                legend + " {{outcome}}",
            )
        ],
        unit="ops",
    )
    panels.add(
        "Published, received and started",
        [
            (
                f"sum by ({by}) (rate(celery_task_published_total{{{labels}}}[$__rate_interval]))",
                "published " + legend,
            ),
            (
                f"sum by ({by}) (rate(celery_task_received_total{{{labels}}}[$__rate_interval]))",
                "received " + legend,
            ),
            (
                f"sum by ({by}) (rate(celery_task_started_total{{{labels}}}[$__rate_interval]))",
                "started " + legend,
            ),
        ],
        unit="ops",
    )
    finished = f"celery_task_finished_total{{{labels}, outcome=~'succeeded|failed'}}".replace(
        "'", '"'
    )
    failed = f'celery_task_finished_total{{{labels}, outcome="failed"}}'
    panels.add(
        "Failure ratio",
        [
            (
                f"sum by ({by}) (rate({failed}[$__rate_interval]))\n"
                f"/ sum by ({by}) (rate({finished}[$__rate_interval]))",
                legend,
            )
        ],
        unit="percentunit",
        description="failed / (succeeded + failed)",
    )
    panels.add(
        "Queue wait p50 / p95 / p99",
        quantiles("celery_task_queue_wait_seconds", labels, by),
        unit="s",
        width=12,
        exemplars=True,
        description="Publish to start. Exemplars link to the trace in Jaeger.",
    )
    panels.add(
        "Runtime p50 / p95 / p99",
        quantiles("celery_task_runtime_seconds", labels, by),
        unit="s",
        width=12,
        exemplars=True,
        description="Start to outcome. Exemplars link to the trace in Jaeger.",
    )


def overview(config: dict[str, Any]) -> dict[str, Any]:
    s = config["selectors"]["workerSelector"]
    panels = Panels()
    panels.row("Tasks")
    task_signals(config, panels, "queue")
    panels.row("Queues")
    panels.add(
        "Queue depth",
        [(f"max by (queue) (celery_queue_depth{{{s}, {QUEUE}, {INSTANCE}}})", "{{queue}}")],
        description="Waiting messages, all priority sub-lists. Every worker exports it: max.",
    )
    panels.add(
        "Oldest message age",
        [
            (
                f"max by (queue) (celery_queue_oldest_message_age_seconds{{{s}, {QUEUE}, {INSTANCE}}})",
                "{{queue}}",
            )
        ],
        unit="s",
    )
    panels.add(
        "Queue poll freshness",
        [
            (
                f"time() - max(celery_queue_poll_last_success_timestamp_seconds{{{s}, {INSTANCE}}})",
                "age",
            )
        ],
        unit="s",
        description="Seconds since any worker last read depths and ages.",
    )
    panels.add(
        "Active and reserved tasks",
        [
            (
                f"sum by (queue) (celery_tasks_active{{{s}, {QUEUE}, {INSTANCE}}})",
                "active {{queue}}",
            ),
            (
                f"sum by (queue) (celery_tasks_reserved{{{s}, {QUEUE}, {INSTANCE}}})",
                "reserved {{queue}}",
            ),
        ],
    )
    panels.add(
        "Pool utilization",
        [
            (
                f"sum by (instance) (celery_worker_pool_busy{{{s}, {INSTANCE}}})\n"
                f"/ sum by (instance) (celery_worker_pool_processes{{{s}, {INSTANCE}}})",
                "{{instance}}",
            )
        ],
        unit="percentunit",
    )
    panels.row("Dead letters")
    panels.add(
        "Dead-letter list size",
        [(f"max(celery_deadletter_size{{{s}, {INSTANCE}}})", "records")],
        description="Shared by every queue; every worker exports it: max.",
    )
    panels.add(
        "Dead-lettered by reason",
        [
            (
                f"sum by (queue, reason) (increase(celery_messages_dead_lettered_total{{{s}, {QUEUE}, {INSTANCE}}}[$__rate_interval]))",
                "{{queue}} {{reason}}",
            )
        ],
        width=16,
    )
    workers_and_readiness(config, panels)
    return dashboard(config, "jobpilot-celery-overview", "Celery / Overview", panels)


def workers_and_readiness(config: dict[str, Any], panels: Panels) -> None:
    s = config["selectors"]["workerSelector"]
    panels.row("Workers and readiness")
    panels.add(
        "Workers up",
        [(f"sum(up{{{s}, {INSTANCE}}})", "up")],
        kind="stat",
        width=4,
    )
    panels.add(
        "Readiness per check",
        [
            (f"min by (check) (celery_readiness_check_up{{{s}, {INSTANCE}}})", "{{check}}"),
            (f"min(celery_worker_ready{{{s}, {INSTANCE}}})", "ready (all workers)"),
        ],
        width=10,
        description="1 = passing. The minimum over the selected workers.",
    )
    panels.add(
        "Health task round trip and broker ping (p95)",
        [
            (
                f"histogram_quantile(0.95, sum by (instance, le) (rate(celery_health_check_roundtrip_seconds_bucket{{{s}, {INSTANCE}}}[$__rate_interval])))",
                "health task {{instance}}",
            ),
            (
                f"histogram_quantile(0.95, sum by (instance, le) (rate(celery_broker_ping_seconds_bucket{{{s}, {INSTANCE}}}[$__rate_interval])))",
                "broker ping {{instance}}",
            ),
            (
                f"time() - max by (instance) (celery_health_check_last_success_timestamp_seconds{{{s}, {INSTANCE}}})",
                "since last health task {{instance}}",
            ),
        ],
        unit="s",
        width=10,
    )
    panels.add(
        "Workers",
        [
            (
                f"max by (instance, hostname, pool, version) (celery_worker_info{{{s}, {INSTANCE}}})",
                "",
            )
        ],
        kind="table",
        width=12,
    )
    panels.add(
        "Which worker consumes which queue",
        [
            (
                f"max by (instance, queue) (celery_worker_consumed_queue{{{s}, {QUEUE}, {INSTANCE}}})",
                "",
            )
        ],
        kind="table",
        width=12,
    )


def drilldown(config: dict[str, Any]) -> dict[str, Any]:
    s = config["selectors"]["workerSelector"]
    panels = Panels()
    panels.row("Task")
    task_signals(config, panels, "task")
    panels.add(
        "Exceptions by class",
        [
            (
                f"sum by (task, exception) (rate(celery_task_exceptions_total{{{s}, {QUEUE}, {TASK}, {INSTANCE}}}[$__rate_interval]))",
                "{{task}} {{exception}}",
            )
        ],
        unit="ops",
        width=24,
    )
    return dashboard(config, "jobpilot-celery-task", "Celery / Task drill-down", panels)


DASHBOARD_FILES = {
    "celery-overview.json": overview,
    "celery-task.json": drilldown,
}


def render_all(config: dict[str, Any]) -> dict[Path, str]:
    files = {RULES_DIR / name: dump_rules(build(config)) for name, build in RULE_FILES.items()}
    files.update(
        {
            GRAFANA_DIR / name: json.dumps(build(config), indent=2) + "\n"
            for name, build in DASHBOARD_FILES.items()
        }
    )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    args = parser.parse_args(argv)
    try:
        files = render_all(load_config())
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        print(f"dashboards/config.yaml: {exc}", file=sys.stderr)
        return 2
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"out of date: {os.path.relpath(path, ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
        print(f"wrote {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
