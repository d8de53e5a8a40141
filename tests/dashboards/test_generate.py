"""The generator: committed files match config.yaml, and bad config is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dashboards import generate
from dashboards.config import CONFIG, HERE, ConfigError, load_config
from telemetry.metrics.catalogue import QUEUE_WAIT_BUCKETS
from tests.dashboards.artifacts import alerts, rules

PINNED_ALERTS = {
    "CeleryWorkerDown",
    "CeleryWorkerNotReady",
    "CeleryBrokerUnreachable",
    "CeleryHealthCheckStale",
    "CeleryQueueBacklog",
    "CeleryQueueNotConsumed",
    "CeleryTaskFailureRateHigh",
    "CeleryWorkerSaturated",
    "CeleryDeadLettersGrowing",
    "CeleryTaskExhausted",
    "CeleryQueueWaitSLOBurn",
    "CeleryTaskRedeliveriesHigh",
    "CeleryTaskDuplicateExecutions",
    "CeleryTaskEtaBeyondVisibility",
    "CeleryTaskHung",
    "CeleryUnackedNearVisibilityTimeout",
    "CeleryBeatDown",
    "CeleryBeatEntryMissed",
    "CeleryBeatEntrySendErrors",
    "CeleryBeatEntryLate",
    "CeleryBeatDuplicate",
}
RECORDING_NAME = re.compile(r"^[a-z_]+:[a-z_]+:[a-z0-9_]+$")


def test_committed_files_match_the_config() -> None:
    assert generate.main(["--check"]) == 0, "run `make dashboards` and commit the result"


def test_a_stale_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given our files written under another folder
    assert generate.main(["--out", str(tmp_path)]) == 0
    assert generate.main(["--check", "--out", str(tmp_path)]) == 0
    # When one of them is edited by hand
    edited = tmp_path / "dashboards" / "rules" / "queues.yml"
    edited.write_text(edited.read_text().replace("5m", "6m"))
    capsys.readouterr()
    # Then --check names it, and only it
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"out of date: {edited}"]


def write_config(tmp_path: Path, **slo: object) -> Path:
    config = yaml.safe_load(CONFIG.read_text())
    config["slo"]["queueWait"].update(slo)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_slo_threshold_must_be_a_bucket_bound(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a bucket bound"):
        load_config(write_config(tmp_path, thresholdSeconds=31))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        load_config(write_config(tmp_path, target=1.5))


def test_the_slo_rules_use_a_bucket_bound_of_the_queue_wait_histogram() -> None:
    bounds = {
        float(le)
        for rule in rules()
        for le in re.findall(
            r'celery_task_queue_wait_seconds_bucket\{[^}]*le="([^"]+)"', rule["expr"]
        )
    }
    assert bounds and bounds <= set(QUEUE_WAIT_BUCKETS)


def test_every_pinned_alert_exists_with_its_metadata() -> None:
    found = alerts()
    assert {rule["alert"] for rule in found} == PINNED_ALERTS
    runbook = (HERE / "RUNBOOK.md").read_text()
    sections = {line[3:].strip() for line in runbook.splitlines() if line.startswith("## ")}
    for rule in found:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "ticket"}
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        anchor = annotations["runbook_url"].split("#")[1]
        assert rule["alert"] in sections and anchor == rule["alert"].lower()


def test_recording_rules_are_named_level_metric_operations() -> None:
    names = [rule["record"] for rule in rules() if "record" in rule]
    assert names and all(RECORDING_NAME.match(name) for name in names), names


def test_nothing_happened_conditions_never_compare_a_maybe_missing_series_to_zero() -> None:
    worker_down = next(rule for rule in alerts() if rule["alert"] == "CeleryWorkerDown")
    assert "absent(up{" in worker_down["expr"]
    not_consumed = next(rule for rule in alerts() if rule["alert"] == "CeleryQueueNotConsumed")
    assert "unless" in not_consumed["expr"]
    for rule in alerts():
        # "== 0" only on gauges every worker always exports
        for match in re.finditer(r"(\w+)\{[^}]*\} == 0", rule["expr"]):
            assert match.group(1) in {"up", "celery_worker_ready", "celery_readiness_check_up"}
