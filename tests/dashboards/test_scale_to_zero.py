"""A fleet that scales to zero, in the real promtool: the rules generated for
``minWorkers: 0`` and ``brokerExporter.enabled: true`` page for work nobody
consumes and for a missing exporter, and for nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dashboards.config import load_config
from dashboards.generate import RULE_FILES
from dashboards.rules import dump_rules
from tests.dashboards.test_rules import promtool

EXPORTER_UP = 'up{job="celery-broker-exporter", instance="exporter:9465"}'
DEPTH = 'celery_queue_depth{job="celery-broker-exporter", instance="exporter:9465", queue="agents"}'
AGE = DEPTH.replace("celery_queue_depth", "celery_queue_oldest_message_age_seconds")
#: The fleet's beat, which is not scaled: sending, its loop turning every scrape.
BEAT = '{job="celery-beat", instance="beat:9466"}'
BEAT_HEALTHY = [
    {"series": f"up{BEAT}", "values": "1x60"},
    {"series": f"celery_beat_active{BEAT}", "values": "1x60"},
    {"series": f"celery_beat_tick_timestamp_seconds{BEAT}", "values": "0+60x60"},
    {"series": f"celery_beat_liveness_timeout_seconds{BEAT}", "values": "60x60"},
]


def fleet_rules(tmp_path: Path) -> list[str]:
    config = load_config()
    config["minWorkers"] = 0
    config["brokerExporter"]["enabled"] = True
    for name, build in RULE_FILES.items():
        (tmp_path / name).write_text(dump_rules(build(config)))
    return list(RULE_FILES)


def generated(tmp_path: Path) -> list[dict[str, Any]]:
    """Every rule of the files ``fleet_rules`` wrote."""
    return [
        rule
        for name in RULE_FILES
        for group in yaml.safe_load((tmp_path / name).read_text())["groups"]
        for rule in group["rules"]
    ]


def alert_names(tmp_path: Path) -> set[str]:
    return {rule["alert"] for rule in generated(tmp_path) if "alert" in rule}


def fires(tmp_path: Path, name: str, **labels: str) -> dict[str, Any]:
    """An expected alert: its labels, and its annotations as generated (promtool compares both)."""
    rule = next(rule for rule in generated(tmp_path) if rule.get("alert") == name)
    annotations = {
        key: value.replace("{{ $labels.queue }}", labels.get("queue", ""))
        for key, value in rule["annotations"].items()
    }
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": annotations}


def run_cases(tmp_path: Path, cases: list[dict[str, Any]]) -> None:
    unit = {"rule_files": fleet_rules(tmp_path), "evaluation_interval": "1m", "tests": cases}
    (tmp_path / "fleet.test.yml").write_text(yaml.safe_dump(unit))
    done = promtool("test", "rules", "fleet.test.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def silent(names: set[str], at: str) -> list[dict[str, Any]]:
    return [{"eval_time": at, "alertname": name, "exp_alerts": []} for name in sorted(names)]


def test_an_idle_fleet_at_zero_workers_pages_for_nothing(tmp_path: Path) -> None:
    # Given no worker target at all, the exporter up with every queue empty, and the
    # fleet's beat sending
    fleet_rules(tmp_path)
    names = alert_names(tmp_path)
    assert {"CeleryWorkerDown", "CeleryQueueNotConsumed", "CeleryBrokerExporterDown"} <= names
    case = {
        "interval": "1m",
        "input_series": [
            {"series": EXPORTER_UP, "values": "1x60"},
            {"series": DEPTH, "values": "0x60"},
            {"series": AGE, "values": "0x60"},
            *BEAT_HEALTHY,
        ],
        # Then not one alert fires, at any time in the hour
        "alert_rule_test": silent(names, "30m") + silent(names, "60m"),
    }
    run_cases(tmp_path, [case])


def test_work_waiting_at_zero_workers_is_not_consumed(tmp_path: Path) -> None:
    # Given no worker, and the exporter sees five messages waiting on agents
    fleet_rules(tmp_path)
    names = alert_names(tmp_path)
    case = {
        "interval": "1m",
        "input_series": [
            {"series": EXPORTER_UP, "values": "1x20"},
            {"series": DEPTH, "values": "5x20"},
            {"series": AGE, "values": "0+60x20"},
            *BEAT_HEALTHY,
        ],
        "alert_rule_test": [
            # Then CeleryQueueNotConsumed fires for that queue after its `for`
            {"eval_time": "3m", "alertname": "CeleryQueueNotConsumed", "exp_alerts": []},
            {
                "eval_time": "10m",
                "alertname": "CeleryQueueNotConsumed",
                "exp_alerts": [fires(tmp_path, "CeleryQueueNotConsumed", queue="agents")],
            },
            # And no worker is "down": there are none, on purpose
            *silent(names - {"CeleryQueueNotConsumed", "CeleryQueueBacklog"}, "10m"),
        ],
    }
    run_cases(tmp_path, [case])


def test_an_absent_exporter_pages_and_a_failing_worker_scrape_still_does(tmp_path: Path) -> None:
    fleet_rules(tmp_path)
    worker_up = 'up{job="celery-worker", instance="w1:9464"}'
    absent = {
        "interval": "1m",
        "input_series": [{"series": worker_up, "values": "1x20"}],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "CeleryBrokerExporterDown", "exp_alerts": []},
            {
                "eval_time": "10m",
                "alertname": "CeleryBrokerExporterDown",
                "exp_alerts": [
                    fires(tmp_path, "CeleryBrokerExporterDown", job="celery-broker-exporter")
                ],
            },
        ],
    }
    down = {
        "interval": "1m",
        "input_series": [
            {"series": EXPORTER_UP, "values": "0x20"},
            {"series": worker_up, "values": "0x20"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "10m",
                "alertname": "CeleryBrokerExporterDown",
                "exp_alerts": [
                    fires(
                        tmp_path,
                        "CeleryBrokerExporterDown",
                        job="celery-broker-exporter",
                        instance="exporter:9465",
                    )
                ],
            },
            {
                "eval_time": "10m",
                "alertname": "CeleryWorkerDown",
                "exp_alerts": [
                    fires(tmp_path, "CeleryWorkerDown", job="celery-worker", instance="w1:9464")
                ],
            },
        ],
    }
    up = {
        "interval": "1m",
        "input_series": [{"series": EXPORTER_UP, "values": "1x20"}],
        "alert_rule_test": [
            {"eval_time": "10m", "alertname": "CeleryBrokerExporterDown", "exp_alerts": []}
        ],
    }
    run_cases(tmp_path, [absent, down, up])


def test_without_an_exporter_no_rule_names_it() -> None:
    config = load_config()
    assert config["brokerExporter"]["enabled"] is False
    text = dump_rules(RULE_FILES["queues.yml"](config))
    assert "CeleryBrokerExporterDown" not in text
