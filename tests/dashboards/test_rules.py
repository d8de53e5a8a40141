"""The rule files load in the real promtool, and every alert's unit tests pass."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from dashboards.beat import beat_rules
from dashboards.config import HERE, load_config
from dashboards.rules import dump_rules, worker_rules
from tests.dashboards.artifacts import alerts, rule_files
from tests.dashboards.tools import binary
from worker.settings import Settings

UNIT_TESTS = HERE / "tests" / "alerts.test.yml"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_promtool_check_rules_is_clean() -> None:
    done = promtool("check", "rules", *map(str, rule_files()))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr


def test_every_alert_has_a_positive_and_a_negative_unit_test() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    positive: set[str] = set()
    negative: set[str] = set()
    for case in cases:
        for check in case["alert_rule_test"]:
            (positive if check["exp_alerts"] else negative).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names == positive == negative


def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", UNIT_TESTS.name, cwd=UNIT_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_worker_down_fires_below_min_workers(tmp_path: Path) -> None:
    # Given rules generated for minWorkers: 2
    config = load_config()
    config["minWorkers"] = 2
    (tmp_path / "workers.yml").write_text(dump_rules(worker_rules(config)))
    one_up = 'up{job="celery-worker", instance="w1:9464"}'
    unit = {
        "rule_files": ["workers.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": one_up, "values": "1x10"},
                    {"series": one_up.replace("w1", "w2"), "values": "1x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "CeleryWorkerDown", "exp_alerts": []}
                ],
            },
            {
                "interval": "1m",
                "input_series": [{"series": one_up, "values": "1x10"}],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "CeleryWorkerDown", "exp_alerts": []},
                    {
                        "eval_time": "5m",
                        "alertname": "CeleryWorkerDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical"},
                                "exp_annotations": next(
                                    rule["annotations"]
                                    for rule in yaml.safe_load(
                                        (tmp_path / "workers.yml").read_text()
                                    )["groups"][1]["rules"]
                                    if rule["alert"] == "CeleryWorkerDown"
                                ),
                            }
                        ],
                    },
                ],
            },
        ],
    }
    (tmp_path / "min.test.yml").write_text(yaml.safe_dump(unit))
    # Then one up worker of two required fires, and two do not
    done = promtool("test", "rules", "min.test.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fewer than 2 worker(s)" in (tmp_path / "workers.yml").read_text()


def test_the_hung_task_threshold_defaults_to_most_of_the_soft_time_limit() -> None:
    """0.8 x TASK_SOFT_TIME_LIMIT's default, as config.yaml's comment says."""
    soft = Settings.model_fields["task_soft_time_limit"].default
    hung = load_config()["alerts"]["CeleryTaskHung"]["maxRunningSeconds"]
    assert hung == pytest.approx(0.8 * soft)


def test_the_slo_rules_name_le_in_float_form_as_prometheus_3_normalizes_it() -> None:
    """Prometheus 3 stores classic histograms' ``le`` as "30.0", never "30"; 2.x keeps the
    exposition's spelling, which prometheus-client writes in float form too."""
    bounds = {
        le for rule in rules_of("slo.yml") for le in re.findall(r'le="([^"]+)"', rule["expr"])
    }
    assert bounds and all(le == "+Inf" or "." in le for le in bounds), bounds


def rules_of(name: str) -> list[dict[str, object]]:
    groups = yaml.safe_load((HERE / "rules" / name).read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_an_app_without_beat_gets_no_beat_down_alert() -> None:
    # Given the config of an app that runs no beat
    config = load_config()
    config["beat"]["enabled"] = False
    # Then its beat rules have no CeleryBeatDown, which would fire forever without a beat,
    # and keep the entry alerts, which need a beat's series to fire
    names = [rule["alert"] for rule in beat_rules(config)["groups"][0]["rules"]]
    assert "CeleryBeatDown" not in names and "CeleryBeatEntryMissed" in names
    config["beat"]["enabled"] = True
    assert "CeleryBeatDown" in [r["alert"] for r in beat_rules(config)["groups"][0]["rules"]]
