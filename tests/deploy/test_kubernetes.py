"""deploy/kubernetes, offline: the built-in kinds against the Kubernetes API schemas
(kubernetes-validate), and the custom resources (PodMonitor, PrometheusRule,
ScaledObject) structurally, down to every metric, label, port and key they name."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dashboards.config import KUBERNETES_DIR, load_config
from telemetry.metrics.queues import priority_keys
from telemetry.settings import TelemetrySettings
from tests.dashboards.artifacts import declared_metrics, metric_names, rules
from tests.dashboards.test_rules import promtool
from worker.celery_app import app
from worker.settings import Settings

#: The oldest Kubernetes release the manifests are checked against.
KUBERNETES_VERSION = "1.30.0"
BUILT_IN = {"Namespace", "ConfigMap", "Deployment", "PersistentVolumeClaim"}


def documents() -> dict[str, dict[str, Any]]:
    """Every manifest the kustomization lists, by kind/name."""
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())
    found = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((KUBERNETES_DIR / resource).read_text()):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env(deployment: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(deployment)["env"]}


def test_the_kustomization_lists_every_manifest_in_the_folder() -> None:
    kustomization = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())
    on_disk = {p.name for p in KUBERNETES_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk


@pytest.mark.parametrize("name", sorted(n for n, d in documents().items() if d["kind"] in BUILT_IN))
def test_built_in_kinds_validate_against_the_api_schema(name: str) -> None:
    doc = documents()[name]
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    # And the validation can fail: a misspelled field is refused
    broken = copy.deepcopy(doc)
    broken["metadata"]["lables"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_worker_deployment_runs_as_the_readme_says() -> None:
    worker = documents()["Deployment/celery-worker"]
    spec = worker["spec"]["template"]["spec"]
    main = container(worker)
    hard_limit = Settings.model_fields["task_time_limit"].default
    assert spec["terminationGracePeriodSeconds"] >= hard_limit + 15
    assert env(worker)["METRICS_HOST"] == "0.0.0.0"
    assert env(worker)["QUEUE_POLL_ENABLED"] == "false"
    assert main["resources"]["requests"] and main["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"metrics": int(env(worker)["METRICS_PORT"])}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    command = main["command"]
    assert command[:4] == ["celery", "-A", "worker", "worker"]
    queues = command[command.index("-Q") + 1].split(",")
    assert queues == load_config()["queues"]
    assert set(queues) <= set(app.amqp.queues)
    concurrency = int(command[command.index("--concurrency") + 1])
    assert concurrency == load_config()["workerConcurrency"]


def test_the_exporter_deployment_serves_on_its_port_with_probes() -> None:
    exporter = documents()["Deployment/celery-broker-exporter"]
    main = container(exporter)
    assert main["command"] == ["python", "-m", "telemetry.broker_exporter", "-A", "worker"]
    assert exporter["spec"]["replicas"] == 1
    assert env(exporter)["METRICS_HOST"] == "0.0.0.0"
    assert set(env(exporter)) <= {name.upper() for name in TelemetrySettings.model_fields}
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"metrics": int(env(exporter)["BROKER_EXPORTER_PORT"])}
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_beat_runs_one_recreated_replica_with_probes_and_its_schedule_on_a_volume() -> None:
    docs = documents()
    beat = docs["Deployment/celery-beat"]
    spec, main = beat["spec"], container(beat)
    # One beat, never two at once: a rolling update would start the new one first
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    command = main["command"]
    assert command[:4] == ["celery", "-A", "worker", "beat"]
    schedule = command[command.index("--schedule") + 1]
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    (volume,) = [name for name, path in mounts.items() if schedule.startswith(path + "/")]
    claim = volumes[volume]["persistentVolumeClaim"]["claimName"]
    assert docs[f"PersistentVolumeClaim/{claim}"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert spec["template"]["spec"]["securityContext"]["fsGroup"] == 1000  # writable by beat
    assert env(beat)["METRICS_HOST"] == "0.0.0.0"
    assert set(env(beat)) - {"OTEL_SERVICE_NAME"} <= {
        name.upper() for name in TelemetrySettings.model_fields
    }
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"metrics": int(env(beat)["BEAT_METRICS_PORT"])}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}


def test_the_pod_monitor_scrapes_every_deployment_with_the_configured_jobs() -> None:
    docs = documents()
    (monitor,) = [d for d in docs.values() if d["kind"] == "PodMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selected = [
        d
        for d in docs.values()
        if d["kind"] == "Deployment"
        and monitor["spec"]["selector"]["matchLabels"].items()
        <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    # Each selected pod's job label value is one of the config's selectors
    jobs = {
        d["spec"]["template"]["metadata"]["labels"][monitor["spec"]["jobLabel"]] for d in selected
    }
    selectors = load_config()["selectors"]
    assert {f'job="{job}"' for job in jobs} == {
        selectors["workerSelector"],
        selectors["exporterSelector"],
        selectors["beatSelector"],
    }
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert all(endpoint["port"] in {p["name"] for p in container(d)["ports"]} for d in selected)


def test_the_prometheus_rule_holds_the_fleet_rules_and_loads_in_promtool(tmp_path: Path) -> None:
    docs = documents()
    (rule,) = [d for d in docs.values() if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups = rule["spec"]["groups"]
    names = {r.get("alert") for g in groups for r in g["rules"]}
    # Every alert of the rule files, plus the exporter's, since the manifests run one
    assert names - {None} == {r["alert"] for r in rules() if "alert" in r} | {
        "CeleryBrokerExporterDown"
    }
    runbook = (KUBERNETES_DIR.parents[1] / "dashboards" / "RUNBOOK.md").read_text()
    assert all(f"\n## {name}\n" in runbook for name in names - {None})
    # And at zero replicas, CeleryWorkerDown is only a failing scrape
    down = next(r for g in groups for r in g["rules"] if r.get("alert") == "CeleryWorkerDown")
    assert "absent" not in down["expr"]
    for group in groups:
        for entry in group["rules"]:
            assert metric_names(entry["expr"]) <= set(declared_metrics()), entry["expr"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    done = promtool("check", "rules", str(tmp_path / "rules.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_scaled_object_names_the_exact_keys_metrics_and_target() -> None:
    config = load_config()
    docs = documents()
    (scaled,) = [d for d in docs.values() if d["kind"] == "ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]["name"]
    assert f"Deployment/{target}" in docs
    triggers = scaled["spec"]["triggers"]
    # One Redis list trigger per key, named as the depth poller names them
    lists = [t["metadata"]["listName"] for t in triggers if t["type"] == "redis"]
    options = {"global_keyprefix": config["keyPrefix"], **(app.conf.broker_transport_options or {})}
    expected = [k for q in config["queues"] for k in priority_keys(q, options)]
    assert lists == expected and len(lists) == 4 * len(config["queues"])
    text = (KUBERNETES_DIR / "scaledobject.yaml").read_text()
    assert '"agents\\x06\\x163"' in text  # written as YAML double-quoted escapes
    # The demand trigger: AverageValue at the worker concurrency, null values ignored
    prometheus = {t["name"]: t for t in triggers if t["type"] == "prometheus"}
    demand = prometheus["demand"]
    assert demand["metricType"] == "AverageValue"
    assert demand["metadata"]["threshold"] == str(config["workerConcurrency"])
    assert demand["metadata"]["ignoreNullValues"] == "true"
    recorded = {r["record"] for r in rules() if "record" in r}
    for trigger in prometheus.values():
        query = trigger["metadata"]["query"]
        assert metric_names(query) <= set(declared_metrics()), query
        assert set(re.findall(r"\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b", query)) <= recorded, query
    assert "celery_tasks_eta_waiting" in prometheus["eta-held"]["metadata"]["query"]


def test_the_image_runs_the_commands_the_manifests_name() -> None:
    dockerfile = (KUBERNETES_DIR.parents[1] / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r requirements/lock.txt" in dockerfile
    done = subprocess.run(
        [sys.executable, "-m", "telemetry.broker_exporter", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=KUBERNETES_DIR.parents[1],
    )
    assert done.returncode == 0 and "-A APP" in done.stdout
