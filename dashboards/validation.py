"""Checking a dashboards config, one problem at a time, each said in one line that names its key.

``dashboards/config.yaml`` is the schema as well as our own config: a config may hold only the
keys it holds, each value of the type it has there (a whole number where it has one, never
``true``), and every item of a list of mappings holds the keys of its first item. On top of the
shape, the values are checked for what the generated files need: durations in Prometheus syntax,
label matcher lists, queue names, Kubernetes names, and the SLO threshold on a bucket bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from telemetry.metrics.catalogue import QUEUE_WAIT_BUCKETS

#: Mappings whose keys are the user's own (label names), not a fixed schema.
FREE_MAPPINGS = frozenset({"kubernetes.ruleLabels"})
#: Keys whose values are Prometheus durations (30s, 5m, 1h, 1d, 1h30m).
DURATION_KEYS = frozenset({"for", "window", "idle", "long", "short", "refresh", "timeRange"})
DURATION = re.compile(r"^(?!$)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
#: One label matcher (name, operator, double-quoted value), and a comma-separated list of them.
_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*'
MATCHERS = re.compile(rf"^{_MATCHER}(,{_MATCHER})*$")
#: A Kubernetes object name or namespace (RFC 1123 label).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: Grafana holds at most 40 characters in a uid, and ours are ``<name>-celery-overview``.
NAME_MAX = 40 - len("-celery-overview")
#: Alert thresholds that are fractions.
RATIO_KEYS = frozenset({"maxRatio", "minBusyRatio"})


class ConfigError(ValueError):
    """A config the generator refuses; its text is ``key: problem``, one line."""


def check_shape(value: Any, schema: Any, key: str = "") -> None:
    """``value`` has the keys and types of ``schema`` (our config), recursively."""
    if isinstance(schema, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key or 'the file'}: must be a mapping of keys to values")
        if key in FREE_MAPPINGS:
            for name, item in value.items():
                if not isinstance(name, str) or not isinstance(item, str):
                    raise ConfigError(f"{key}: {name!r}: names and values must be strings")
            return
        for name in value:
            if name not in schema:
                raise ConfigError(f"{_join(key, name)}: unknown key")
        for name, part in schema.items():
            if name not in value:
                raise ConfigError(f"{_join(key, name)}: missing")
            check_shape(value[name], part, _join(key, name))
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: must be a list")
        if schema:
            for n, item in enumerate(value):
                check_shape(item, schema[0], f"{key}[{n}]")
    elif type(value) is not type(schema) and not (type(schema) is float and type(value) is int):
        raise ConfigError(f"{key}: {value!r} must be {_kind(schema)}")


def check_values(config: Mapping[str, Any]) -> None:
    """What the generated files need of the values, once the shape is right."""
    for key, value in _leaves(config):
        if key.rsplit(".", 1)[-1].split("[")[0] in DURATION_KEYS and not DURATION.match(value):
            raise ConfigError(f"{key}: {value!r} is not a Prometheus duration (30s, 5m, 1h)")
        if key.startswith("alerts.") and isinstance(value, int | float):
            if value < 0:
                raise ConfigError(f"{key}: {value!r} must not be negative")
            if key.rsplit(".", 1)[-1] in RATIO_KEYS and value > 1:
                raise ConfigError(f"{key}: {value!r} is a fraction and must be at most 1")
    for name in ("workerSelector", "exporterSelector", "beatSelector"):
        selector = config["selectors"][name]
        if not MATCHERS.match(selector):
            raise ConfigError(
                f'selectors.{name}: {selector!r} must be label matchers such as job="celery-worker"'
            )
    if config["selectors"]["workerSelector"] == config["selectors"]["exporterSelector"]:
        raise ConfigError(
            "selectors.exporterSelector: must select other targets than workerSelector"
        )
    if config["selectors"]["beatSelector"] in (
        config["selectors"]["workerSelector"],
        config["selectors"]["exporterSelector"],
    ):
        raise ConfigError(
            "selectors.beatSelector: must select other targets than the workers and the exporter"
        )
    name = config["name"]
    if not DNS_LABEL.match(name) or len(name) > NAME_MAX:
        raise ConfigError(
            f"name: {name!r} must be lower-case letters, digits and '-', at most {NAME_MAX} characters"
        )
    check_queues(config["queues"])
    for key in ("kubernetes.namespace", "keda.deployment"):
        section, field = key.split(".")
        if not DNS_LABEL.match(config[section][field]):
            raise ConfigError(f"{key}: {config[section][field]!r} is not a Kubernetes name")
    check_counts(config)
    check_slo(config["slo"]["queueWait"])
    if not re.match(r"^https?://\S+$", config["dashboards"]["runbookBase"]):
        raise ConfigError("dashboards.runbookBase: must be an http(s) URL")


def check_queues(queues: list[str]) -> None:
    if not queues:
        raise ConfigError("queues: must name at least one queue")
    for n, queue in enumerate(queues):
        if not queue.strip() or queue != queue.strip():
            raise ConfigError(f"queues[{n}]: {queue!r} is not a queue name")
        if queue in queues[:n]:
            raise ConfigError(f"queues[{n}]: {queue!r} is listed twice")


def check_counts(config: Mapping[str, Any]) -> None:
    keda = config["keda"]
    counts = (
        ("minWorkers", config["minWorkers"], 0),
        ("workerConcurrency", config["workerConcurrency"], 1),
        ("keda.redisDatabase", keda["redisDatabase"], 0),
        ("keda.minReplicas", keda["minReplicas"], 0),
        ("keda.maxReplicas", keda["maxReplicas"], max(1, keda["minReplicas"])),
        ("keda.pollingInterval", keda["pollingInterval"], 1),
        ("keda.cooldownPeriod", keda["cooldownPeriod"], 0),
    )
    for key, value, least in counts:
        if value < least:
            raise ConfigError(f"{key}: {value!r} must be at least {least}")


def check_slo(queue_wait: Mapping[str, Any]) -> None:
    threshold = float(queue_wait["thresholdSeconds"])
    if threshold not in QUEUE_WAIT_BUCKETS:
        raise ConfigError(
            f"slo.queueWait.thresholdSeconds: {threshold:g} is not a bucket bound of "
            f"celery_task_queue_wait_seconds {list(QUEUE_WAIT_BUCKETS)}"
        )
    target = float(queue_wait["target"])
    if not 0 < target < 1:
        raise ConfigError(f"slo.queueWait.target: {target} must be between 0 and 1")
    for severity in ("page", "ticket"):
        for n, window in enumerate(queue_wait[severity]):
            if window["burnRate"] <= 0:
                raise ConfigError(f"slo.queueWait.{severity}[{n}].burnRate: must be above 0")


def _leaves(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for name, part in value.items():
            yield from _leaves(part, _join(key, name))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _leaves(item, f"{key}[{n}]")
    else:
        yield key, value


def _join(key: str, name: object) -> str:
    return f"{key}.{name}" if key else str(name)


def _kind(schema: Any) -> str:
    return {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a string",
    }.get(type(schema), type(schema).__name__)
