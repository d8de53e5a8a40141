"""Dashboards and rules read only declared metrics, and every declared metric is read."""

from __future__ import annotations

from tests.dashboards.artifacts import declared_metrics, metric_names, panel_queries, rules


def used_metrics() -> set[str]:
    exprs = [expr for _, _, expr in panel_queries()] + [rule["expr"] for rule in rules()]
    return set().union(*(metric_names(expr) for expr in exprs))


def test_every_metric_named_is_declared_in_the_catalogue() -> None:
    assert used_metrics() - set(declared_metrics()) == set()


def test_every_declared_metric_is_used_by_a_dashboard_or_a_rule() -> None:
    assert set(declared_metrics()) - used_metrics() == set()


def test_metric_names_reads_series_and_skips_recording_rule_names() -> None:
    expr = 'queue:celery_queue_depth:max > 0 unless rate(celery_task_started_total{a="b"}[5m])'
    assert metric_names(expr) == {"celery_task_started"}
