"""Reading the committed rule files and dashboards, for the tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from dashboards.config import GRAFANA_DIR, RULES_DIR
from telemetry.broker_exporter.exporter import ExporterMetrics
from telemetry.metrics.beat_catalogue import BeatMetrics
from telemetry.metrics.catalogue import WorkerMetrics
from telemetry.metrics.failed_catalogue import ExhaustedMetrics
from telemetry.metrics.shared_counter import SharedCounter

#: A metric name in PromQL, not part of a recording rule's ``level:metric:ops`` name.
METRIC_NAME = re.compile(r"(?<![\w:])(celery_[a-z_]+|up)(?![\w:])")
SERIES_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def dashboard_files() -> list[Path]:
    return sorted(GRAFANA_DIR.glob("*.json"))


def rules() -> Iterator[dict[str, Any]]:
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in dashboard_files()]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, expr) for every target of every panel."""
    return [
        (dashboard["title"], panel["title"], target["expr"])
        for dashboard in dashboards()
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """The metric families an expression reads (suffixes stripped), ``up`` excluded."""
    names = set()
    for name in METRIC_NAME.findall(expr):
        if name == "up":
            continue
        for suffix in SERIES_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        names.add(name)
    return names


def substitute_variables(expr: str) -> str:
    """A panel query as Grafana sends it with every variable at "All"."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace("$queue", ".*")
        .replace("$task", ".*")
        .replace("$instance", ".*")
    )


def declared_metrics() -> dict[str, tuple[str, ...]]:
    """Every metric the worker declares, by family name, with its label names."""
    metrics = WorkerMetrics(CollectorRegistry())
    exporter = ExporterMetrics(CollectorRegistry(), "test")
    beat = BeatMetrics(CollectorRegistry())
    exhausted_registry = CollectorRegistry()
    exhausted = ExhaustedMetrics(exhausted_registry, SharedCounter())
    declared = {
        metric._name: tuple(metric._labelnames)
        for holder in (metrics, metrics.broker, exporter, exporter.ops, exhausted, beat)
        for metric in vars(holder).values()
        if isinstance(metric, MetricWrapperBase)
    }
    for family in metrics.tasks.describe():
        declared[family.name] = tuple(family._labelnames)  # type: ignore[attr-defined]
    for family in exhausted_registry.collect():  # the shared-memory write-error count
        declared.setdefault(family.name, ())
    return declared
