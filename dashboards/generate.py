"""Generate the Prometheus rule files, Grafana dashboards and Kubernetes rule and scaling manifests from dashboards/config.yaml.

    .venv/bin/python -m dashboards.generate          # write the files (make dashboards)
    .venv/bin/python -m dashboards.generate --check  # exit 1 if any committed file differs

The config is read by ``dashboards.config``, the rules are built by
``dashboards.rules``, ``dashboards.delivery`` and ``dashboards.beat``, the dashboards
by ``dashboards.grafana``, and the PrometheusRule and KEDA ScaledObject by
``dashboards.kubernetes``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from dashboards.beat import beat_rules
from dashboards.config import GRAFANA_DIR, KUBERNETES_DIR, ROOT, RULES_DIR, ConfigError, load_config
from dashboards.delivery import delivery_rules
from dashboards.grafana import DASHBOARD_FILES
from dashboards.kubernetes import prometheus_rule, scaled_object
from dashboards.rules import dump_rules, queue_rules, slo_rules, task_rules, worker_rules

RULE_FILES = {
    "workers.yml": worker_rules,
    "queues.yml": queue_rules,
    "tasks.yml": task_rules,
    "slo.yml": slo_rules,
    "delivery.yml": delivery_rules,
    "beat.yml": beat_rules,
}


def render_all(config: dict[str, Any]) -> dict[Path, str]:
    files = {RULES_DIR / name: dump_rules(build(config)) for name, build in RULE_FILES.items()}
    files[KUBERNETES_DIR / "prometheus-rule.yaml"] = dump_rules(prometheus_rule(config, RULE_FILES))
    files[KUBERNETES_DIR / "scaledobject.yaml"] = dump_rules(scaled_object(config))
    files.update(
        {
            GRAFANA_DIR / name: json.dumps(build(config), indent=2) + "\n"
            for name, build in DASHBOARD_FILES.items()
        }
    )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    args = parser.parse_args(argv)
    try:
        files = render_all(load_config())
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        print(f"dashboards/config.yaml: {exc}", file=sys.stderr)
        return 2
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"out of date: {os.path.relpath(path, ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
        print(f"wrote {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
