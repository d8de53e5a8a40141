"""The generator's config: where the files go, loading and checking a config, selectors.

``dashboards/config.yaml`` is jobpilot's config and the defaults of every other. A team's config
(``--config their.yaml``) is merged over it, key by key (a list replaces ours whole), and must set
the keys of ``SITE_KEYS`` itself, so that nothing of jobpilot's (its queues, jobs, namespace)
ends up in another team's files. Both are then checked by ``dashboards.validation``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dashboards.validation import FREE_MAPPINGS, check_shape, check_values
from dashboards.validation import ConfigError as ConfigError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = HERE / "config.yaml"
#: Where each kind of generated file goes, under the output folder (the checkout by default).
RULES_PATH = Path("dashboards", "rules")
GRAFANA_PATH = Path("dashboards", "grafana")
KUBERNETES_PATH = Path("deploy", "kubernetes")
RULES_DIR = ROOT / RULES_PATH
GRAFANA_DIR = ROOT / GRAFANA_PATH
KUBERNETES_DIR = ROOT / KUBERNETES_PATH

#: What only the team can say: a config other than ours must set each of these itself.
SITE_KEYS = (
    "name",
    "queues",
    "keyPrefix",
    "workerConcurrency",
    "selectors.workerSelector",
    "selectors.exporterSelector",
    "selectors.beatSelector",
    "kubernetes.namespace",
    "kubernetes.ruleLabels",
    "keda.deployment",
    "keda.redisAddress",
)

REGEX_METACHARACTERS = frozenset("\\.+*?()|[]{}^$")


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"not valid YAML{where}: {problem}") from exc


def merged(
    defaults: Mapping[str, Any], override: Mapping[str, Any], prefix: str = ""
) -> dict[str, Any]:
    """``override`` over ``defaults``, mapping by mapping; any other value, and a mapping of the
    user's own names (``kubernetes.ruleLabels``), replaces ours whole."""
    result = dict(defaults)
    for key, value in override.items():
        path = f"{prefix}{key}"
        if (
            isinstance(value, Mapping)
            and isinstance(defaults.get(key), Mapping)
            and path not in FREE_MAPPINGS
        ):
            result[key] = merged(defaults[key], value, f"{path}.")
        else:
            result[key] = value
    return result


def load_config(path: Path = CONFIG) -> dict[str, Any]:
    """The checked config at ``path``; ConfigError (``key: problem``) if it is refused."""
    ours: dict[str, Any] = read_yaml(CONFIG)
    if path.resolve() == CONFIG.resolve():
        config = ours
    else:
        theirs = read_yaml(path)
        if not isinstance(theirs, Mapping):
            raise ConfigError("must be a mapping of keys to values")
        for key in SITE_KEYS:
            if not _has(theirs, key):
                raise ConfigError(
                    f"{key}: missing (a team's config sets it; see docs/dashboards.md)"
                )
        config = merged(ours, theirs)
    check_shape(config, ours)
    check_values(config)
    return config


def _has(config: Mapping[str, Any], key: str) -> bool:
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


def selector(config: dict[str, Any], *extra: str) -> str:
    return "{" + ", ".join([config["selectors"]["workerSelector"], *extra]) + "}"


def exporter_selector(config: dict[str, Any], *extra: str) -> str:
    return "{" + ", ".join([config["selectors"]["exporterSelector"], *extra]) + "}"


def beat_selector(config: dict[str, Any], *extra: str) -> str:
    return "{" + ", ".join([config["selectors"]["beatSelector"], *extra]) + "}"


def broker_state(config: dict[str, Any], metric: str, *extra: str) -> str:
    """A broker series from the workers or the broker exporter: whoever polls it."""
    return f"({metric}{selector(config, *extra)} or {metric}{exporter_selector(config, *extra)})"


def queue_regex(config: dict[str, Any]) -> str:
    """The config's queues as one PromQL regex: each name matched literally."""
    return "|".join(_regex_literal(queue) for queue in config["queues"])


def _regex_literal(text: str) -> str:
    # A backslash before each of RE2's metacharacters; PromQL's double-quoted strings then
    # need the backslash and the quote escaped once more.
    escaped = "".join(f"\\{c}" if c in REGEX_METACHARACTERS else c for c in text)
    return escaped.replace("\\", "\\\\").replace('"', '\\"')
