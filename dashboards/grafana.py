"""The Grafana dashboards: Celery / Overview and Celery / Task drill-down."""

from __future__ import annotations

from typing import Any

from dashboards.beat import beat_panels
from dashboards.config import queue_regex
from dashboards.delivery import delivery_panels
from dashboards.failed import failed_work_panels
from dashboards.panels import INSTANCE, QUEUE, TASK, Panels
from dashboards.workers import workers_and_readiness


def variables(config: dict[str, Any]) -> list[dict[str, Any]]:
    s = config["selectors"]["workerSelector"]
    queues = queue_regex(config)

    def query_variable(name: str, query: str, every: str = ".*") -> dict[str, Any]:
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
            "allValue": every,
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
        # "All" is the config's queues, never another fleet's: the broker-state recording
        # rules keep no job label, so a queue regex of ".*" would show every fleet's depth.
        query_variable(
            "queue",
            f'label_values(celery_task_finished_total{{{s}, queue=~"{queues}"}}, queue)',
            queues,
        ),
        query_variable(
            "task", f'label_values(celery_task_finished_total{{{s}, queue=~"$queue"}}, task)'
        ),
    ]


def dashboard(config: dict[str, Any], uid: str, title: str, panels: Panels) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["celery", config["name"]],
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
        [(f"queue:celery_queue_depth:max{{{QUEUE}}}", "{{queue}}")],
        description="Waiting messages, all priority sub-lists, from the workers' polls or "
        "the broker exporter.",
    )
    panels.add(
        "Oldest message age",
        [
            (
                f"queue:celery_queue_oldest_message_age_seconds:max{{{QUEUE}}}",
                "{{queue}}",
            )
        ],
        unit="s",
    )
    panels.add(
        "Queue poll freshness",
        [
            (
                "time() - broker:celery_queue_poll_last_success_timestamp_seconds:max",
                "age",
            )
        ],
        unit="s",
        description="Seconds since a worker or the broker exporter last read depths and ages.",
    )
    exporter = config["selectors"]["exporterSelector"]
    panels.add(
        "Broker exporter",
        [
            (f"sum(celery_broker_exporter_ready{{{exporter}}})", "ready"),
            (
                f"count by (version) (celery_broker_exporter_info{{{exporter}}})",
                "running {{version}}",
            ),
        ],
        description="Exporters serving broker state with no worker running "
        "(python -m telemetry.broker_exporter); empty where none runs.",
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
    panels.add(
        "Pool size",
        [
            (
                f"sum by (instance) (celery_worker_pool_processes{{{s}, {INSTANCE}}})",
                "processes {{instance}}",
            ),
            (
                f"sum by (instance) (celery_worker_pool_max_processes{{{s}, {INSTANCE}}})",
                "max {{instance}}",
            ),
        ],
        description="Pool processes now and the most allowed (--autoscale); pool_grow, "
        "pool_shrink and autoscaling move the first.",
    )
    failed_work_panels(config, panels)
    delivery_panels(config, panels)
    workers_and_readiness(config, panels)
    beat_panels(config, panels)
    return dashboard(config, f"{config['name']}-celery-overview", "Celery / Overview", panels)


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
    return dashboard(config, f"{config['name']}-celery-task", "Celery / Task drill-down", panels)


DASHBOARD_FILES = {
    "celery-overview.json": overview,
    "celery-task.json": drilldown,
}
