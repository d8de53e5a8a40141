"""Generate the Prometheus rule files, Grafana dashboards and Kubernetes rule and scaling manifests
from a config.

    .venv/bin/python -m dashboards.generate          # ours, from dashboards/config.yaml (make dashboards)
    .venv/bin/python -m dashboards.generate --check  # exit 1 if any committed file differs
    .venv/bin/python -m dashboards.generate --config their.yaml --out DIR   # another team's

The files land at the same paths under ``--out`` (the checkout by default):
``dashboards/rules/*.yml``, ``dashboards/grafana/*.json`` and
``deploy/kubernetes/{prometheus-rule,scaledobject}.yaml``. A config that is refused is one line,
``CONFIG: key: problem``, and exit status 2.

The config is read and checked by ``dashboards.config``, the rules are built by
``dashboards.rules``, ``dashboards.queue_rules``, ``dashboards.slo``, ``dashboards.delivery`` and
``dashboards.beat``, the dashboards by
``dashboards.grafana``, and the PrometheusRule and KEDA ScaledObject by ``dashboards.kubernetes``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from dashboards.beat import beat_rules
from dashboards.config import (
    CONFIG,
    GRAFANA_PATH,
    KUBERNETES_PATH,
    ROOT,
    RULES_PATH,
    ConfigError,
    load_config,
)
from dashboards.delivery import delivery_rules
from dashboards.grafana import DASHBOARD_FILES
from dashboards.kubernetes import prometheus_rule, scaled_object
from dashboards.queue_rules import queue_rules
from dashboards.rules import dump_rules, task_rules, worker_rules
from dashboards.slo import slo_rules

RULE_FILES = {
    "workers.yml": worker_rules,
    "queues.yml": queue_rules,
    "tasks.yml": task_rules,
    "slo.yml": slo_rules,
    "delivery.yml": delivery_rules,
    "beat.yml": beat_rules,
}


def render_all(config: dict[str, Any], out: Path = ROOT, source: Path = CONFIG) -> dict[Path, str]:
    """Every generated file's text, by its path under ``out``; the YAML files name ``source``."""
    rules, grafana, kubernetes = out / RULES_PATH, out / GRAFANA_PATH, out / KUBERNETES_PATH
    resolved = source.resolve()
    origin = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else resolved.name

    def dump(built: dict[str, Any]) -> str:
        return dump_rules(built, origin)

    files = {rules / name: dump(build(config)) for name, build in RULE_FILES.items()}
    files[kubernetes / "prometheus-rule.yaml"] = dump(prometheus_rule(config, RULE_FILES))
    files[kubernetes / "scaledobject.yaml"] = dump(scaled_object(config))
    files.update(
        {
            grafana / name: json.dumps(build(config), indent=2) + "\n"
            for name, build in DASHBOARD_FILES.items()
        }
    )
    return files


def shown(path: Path) -> str:
    """A path as a user reads it: relative under the working folder, else absolute."""
    return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--config", type=Path, default=CONFIG, help="the config (default: dashboards/config.yaml)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT,
        help="the folder the files go under (default: the checkout)",
    )
    parser.add_argument("--check", action="store_true", help="fail if a written file differs")
    args = parser.parse_args(argv)
    try:
        files = render_all(load_config(args.config), args.out, args.config)
    except ConfigError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"out of date: {shown(path)}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path])
        except OSError as exc:
            print(f"{shown(path)}: cannot write it: {exc.strerror}", file=sys.stderr)
            return 2
        print(f"wrote {shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
