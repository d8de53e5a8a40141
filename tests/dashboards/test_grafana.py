"""The Grafana dashboards import as is: structure, variables and queries."""

from __future__ import annotations

import re

import pytest
import yaml

from dashboards.config import GRAFANA_DIR
from tests.dashboards.artifacts import dashboards, declared_metrics, panels

VARIABLES = ("queue", "task", "instance")
SELECTOR = re.compile(r"\b(celery_[a-z_]+|up)\{([^}]*)\}")
QUEUE_LABELLED = {name for name, labels in declared_metrics().items() if "queue" in labels}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: The broker exporter's own series: its identity, and what its operator API did.
EXPORTER_OWN = ("celery_broker_exporter_", "celery_failed_requeued", "celery_ops_actions")
#: Series beat exports under names it shares with the workers.
BEAT_SHARED = {"up", "celery_readiness_check_up"}


@pytest.mark.parametrize("dashboard", dashboards(), ids=lambda d: d["uid"])
def test_a_dashboard_has_the_importable_shape(dashboard: dict) -> None:  # type: ignore[type-arg]
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in VARIABLES:
        assert variables[name]["multi"] and variables[name]["includeAll"], name
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE and panel["targets"], panel["title"]
        for target in panel["targets"]:
            for metric, matchers in SELECTOR.findall(target["expr"]):
                # Every selector: the worker selector, then the variables as regexes;
                # the broker exporter's and beat's series carry their own selector only.
                if matchers.startswith('job="celery-broker-exporter"'):
                    assert metric.startswith(EXPORTER_OWN), target["expr"]
                    continue
                if matchers.startswith('job="celery-beat"'):
                    assert metric.startswith("celery_beat_") or metric in BEAT_SHARED, target
                    continue
                assert matchers.startswith('job="celery-worker"'), target["expr"]
                assert 'instance=~"$instance"' in matchers, target["expr"]
                if metric.removesuffix("_total").removesuffix("_bucket") in QUEUE_LABELLED:
                    assert 'queue=~"$queue"' in matchers, target["expr"]


def test_the_overview_has_every_signal_the_design_lists() -> None:
    overview = next(d for d in dashboards() if d["uid"] == "jobpilot-celery-overview")
    titles = {panel["title"] for panel in panels(overview)}
    assert {
        "Throughput by outcome",
        "Queue depth",
        "Oldest message age",
        "Failed work held",
        "Exhausted by task",
        "Queue wait p50 / p95 / p99",
        "Runtime p50 / p95 / p99",
        "Failure ratio",
        "Active and reserved tasks",
        "Pool utilization",
        "Readiness per check",
        "Health task round trip and broker ping (p95)",
        "Workers up",
        "Which worker consumes which queue",
        "Dead-lettered by reason",
    } <= titles
    latency = [p for p in panels(overview) if p["title"].endswith("p50 / p95 / p99")]
    for panel in latency:
        assert all("_bucket{" in t["expr"] and t["exemplar"] for t in panel["targets"])
    shared = [p for p in panels(overview) if p["title"] in {"Queue depth", "Oldest message age"}]
    # Broker state from workers and the exporter alike: the max-by-queue recording rules.
    assert all(t["expr"].startswith("queue:celery_queue_") for p in shared for t in p["targets"])


def test_the_drilldown_adds_exceptions_by_class() -> None:
    drilldown = next(d for d in dashboards() if d["uid"] == "jobpilot-celery-task")
    exceptions = next(p for p in panels(drilldown) if p["title"] == "Exceptions by class")
    assert re.search(r"sum by \(task, exception\)", exceptions["targets"][0]["expr"])


def test_the_provisioned_prometheus_datasource_links_exemplars_to_jaeger() -> None:
    provisioning = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "jobpilot.yml").read_text()
    )
    by_uid = {source["uid"]: source for source in provisioning["datasources"]}
    link = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert link == [{"name": "trace_id", "datasourceUid": "jaeger"}]
    assert by_uid["jaeger"]["type"] == "jaeger"
