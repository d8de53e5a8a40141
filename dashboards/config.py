"""dashboards/config.yaml: where the generated files go, loading and validating the config, selectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from telemetry.metrics.catalogue import QUEUE_WAIT_BUCKETS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = HERE / "config.yaml"
RULES_DIR = HERE / "rules"
GRAFANA_DIR = HERE / "grafana"
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
#: Matchers every dashboard query carries besides the worker selector.


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
    checks = (
        ("minWorkers", config["minWorkers"], int, lambda v: v >= 0, "a whole number, 0 or more"),
        (
            "workerConcurrency",
            config["workerConcurrency"],
            int,
            lambda v: v > 0,
            "a whole number above 0",
        ),
        ("keyPrefix", config["keyPrefix"], str, lambda v: True, "a string"),
        (
            "brokerExporter.enabled",
            config["brokerExporter"]["enabled"],
            bool,
            lambda v: True,
            "true or false",
        ),
    )
    for name, value, kind, valid, expected in checks:
        # bool is an int in Python: a whole number must not be true or false.
        if type(value) is not kind or not valid(value):
            raise ConfigError(f"{name}: {value!r} must be {expected}")
    return config


def selector(config: dict[str, Any], *extra: str) -> str:
    return "{" + ", ".join([config["selectors"]["workerSelector"], *extra]) + "}"


def exporter_selector(config: dict[str, Any], *extra: str) -> str:
    return "{" + ", ".join([config["selectors"]["exporterSelector"], *extra]) + "}"


def beat_selector(config: dict[str, Any], *extra: str) -> str:
    return "{" + ", ".join([config["selectors"]["beatSelector"], *extra]) + "}"


def broker_state(config: dict[str, Any], metric: str, *extra: str) -> str:
    """A broker series from the workers or the broker exporter: whoever polls it."""
    return f"({metric}{selector(config, *extra)} or {metric}{exporter_selector(config, *extra)})"


# --- rules -------------------------------------------------------------------
