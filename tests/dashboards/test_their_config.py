"""Another team's config: its queues, jobs and key prefix in every generated file, checked by the
real promtool; and every config mistake refused in one line, with nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import generate
from dashboards.config import CONFIG
from telemetry.metrics.queues import priority_keys
from tests.dashboards.artifacts import metric_names
from tests.dashboards.test_rules import promtool

#: A team that shares nothing with jobpilot: a queue name with a regex metacharacter, a prefix.
THEIRS: dict[str, Any] = {
    "name": "billing",
    "queues": ["invoices", "payments.high", "refunds"],
    "keyPrefix": "billing:",
    "workerConcurrency": 4,
    "selectors": {
        "workerSelector": 'job="billing-worker"',
        "exporterSelector": 'job="billing-broker-exporter"',
        "beatSelector": 'job="billing-beat"',
    },
    "kubernetes": {"namespace": "billing", "ruleLabels": {"release": "kube-prometheus"}},
    "keda": {"deployment": "billing-worker", "redisAddress": "redis.billing.svc:6379"},
    "alerts": {"CeleryQueueBacklog": {"maxOldestAgeSeconds": 60}},
}
WORKER = 'job="billing-worker"'
EXPORTER = 'job="billing-broker-exporter"'
BEAT = 'job="billing-beat"'
SERIES = re.compile(r"\b(celery_[a-z_]+|up)\{([^}]*)\}")


def write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Their files, generated once: ``--config their.yaml --out DIR``."""
    folder = tmp_path_factory.mktemp("theirs")
    config = write(folder / "billing.yaml", THEIRS)
    assert generate.main(["--config", str(config), "--out", str(folder / "out")]) == 0
    return folder / "out"


def ours_relative() -> set[Path]:
    return {path.relative_to(generate.ROOT) for path in generate.render_all(_ours())}


def _ours() -> dict[str, Any]:
    from dashboards.config import load_config

    return load_config()


def generated(out: Path) -> dict[Path, str]:
    return {p.relative_to(out): p.read_text() for p in out.rglob("*") if p.is_file()}


def test_their_files_are_the_same_set_as_ours(out: Path) -> None:
    assert set(generated(out)) == ours_relative()
    assert (
        generate.main(["--config", str(out.parent / "billing.yaml"), "--out", str(out), "--check"])
        == 0
    )


def test_nothing_of_jobpilots_leaks_into_their_files(out: Path) -> None:
    for path, text in generated(out).items():
        # Our runbook stays their default, unless they point runbookBase elsewhere
        text = re.sub(r"runbook_url: \S+", "", text)
        for job in ("celery-worker", "celery-broker-exporter", "celery-beat"):
            assert f'job="{job}"' not in text and f'job=\\"{job}\\"' not in text, path
        for word in ("jobpilot", "agents", "briefings", "scraping"):
            assert word not in text, (path, word)


def test_their_rules_load_in_promtool_and_select_their_jobs(out: Path) -> None:
    rule_files = sorted((out / "dashboards" / "rules").glob("*.yml"))
    done = promtool("check", "rules", *map(str, rule_files))
    assert done.returncode == 0 and "WARNING" not in done.stdout + done.stderr, (
        done.stdout + done.stderr
    )
    kube = yaml.safe_load((out / "deploy" / "kubernetes" / "prometheus-rule.yaml").read_text())
    assert kube["metadata"] == {
        "name": "billing-worker-rules",
        "namespace": "billing",
        "labels": {"release": "kube-prometheus"},
    }
    (out.parent / "fleet.yml").write_text(yaml.safe_dump({"groups": kube["spec"]["groups"]}))
    done = promtool("check", "rules", str(out.parent / "fleet.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    exprs = [
        rule["expr"]
        for path in [*rule_files, out.parent / "fleet.yml"]
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    selected = [matchers for expr in exprs for _, matchers in SERIES.findall(expr)]
    assert selected and all(m.startswith((WORKER, EXPORTER, BEAT)) for m in selected), selected
    assert any(m.startswith(EXPORTER) for m in selected)
    assert any(m.startswith(BEAT) for m in selected)
    backlog = next(e for e in exprs if "queue:celery_queue_oldest_message_age_seconds:max >" in e)
    assert backlog.rstrip().endswith("> 60"), backlog  # their threshold, over our default


def test_their_dashboards_select_their_job_and_offer_their_queues(out: Path) -> None:
    for path in sorted((out / "dashboards" / "grafana").glob("*.json")):
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"].startswith("billing-celery-") and "billing" in dashboard["tags"]
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        queue = variables["queue"]
        regex = "invoices|payments\\\\.high|refunds"  # the dot escaped for RE2, then for PromQL
        assert queue["query"]["query"] == (
            f'label_values(celery_task_finished_total{{{WORKER}, queue=~"{regex}"}}, queue)'
        )
        assert queue["allValue"] == regex
        for name in ("instance", "task"):
            assert variables[name]["query"]["query"].split("{")[1].startswith(WORKER)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        selected = [matchers for expr in exprs for _, matchers in SERIES.findall(expr)]
        assert selected and all(m.startswith((WORKER, EXPORTER, BEAT)) for m in selected)


def test_their_scaled_object_lists_their_queues_with_their_prefix(out: Path) -> None:
    scaled = yaml.safe_load((out / "deploy" / "kubernetes" / "scaledobject.yaml").read_text())
    assert scaled["metadata"] == {"name": "billing-worker", "namespace": "billing"}
    assert scaled["spec"]["scaleTargetRef"] == {"name": "billing-worker"}
    triggers = scaled["spec"]["triggers"]
    lists = [t["metadata"] for t in triggers if t["type"] == "redis"]
    options = {"global_keyprefix": "billing:"}
    assert [t["listName"] for t in lists] == [
        key for queue in THEIRS["queues"] for key in priority_keys(queue, options)
    ]
    assert lists[0]["listName"] == "billing:invoices"
    assert {t["address"] for t in lists} == {"redis.billing.svc:6379"}
    assert {t["listLength"] for t in lists} == {"4"}
    demand = next(t for t in triggers if t["metadata"].get("query", "").startswith("sum("))
    assert demand["metadata"]["threshold"] == "4"
    assert metric_names(demand["metadata"]["query"]) == set()


def test_the_scaling_query_selects_exactly_their_queues_in_promtool(out: Path) -> None:
    # Given their recording rules and the demand trigger's query, with a queue of another fleet
    # and a name their escaped dot must not match
    scaled = yaml.safe_load((out / "deploy" / "kubernetes" / "scaledobject.yaml").read_text())
    query = next(t for t in scaled["spec"]["triggers"] if t.get("name") == "demand")
    depth = 'celery_queue_depth{{job="billing-broker-exporter", instance="e:9465", queue="{}"}}'
    unit = {
        "rule_files": [str(out / "dashboards" / "rules" / "queues.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": depth.format("invoices"), "values": "3x5"},
                    {"series": depth.format("payments.high"), "values": "5x5"},
                    {"series": depth.format("paymentsXhigh"), "values": "100x5"},
                    {"series": depth.format("agents"), "values": "1000x5"},
                ],
                # When KEDA evaluates the demand query
                "promql_expr_test": [
                    {
                        "expr": query["metadata"]["query"],
                        "eval_time": "3m",
                        # Then it sums their two queues' demand, nothing else
                        "exp_samples": [{"labels": "{}", "value": 8}],
                    }
                ],
            }
        ],
    }
    (out.parent / "demand.test.yml").write_text(yaml.safe_dump(unit))
    done = promtool("test", "rules", str(out.parent / "demand.test.yml"))
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def with_change(change: dict[str, Any], base: dict[str, Any] = THEIRS) -> dict[str, Any]:
    config = json.loads(json.dumps(base))
    for key, value in change.items():
        *parents, last = key.split(".")
        target = config
        for part in parents:
            target = target.setdefault(part, {})
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return config


DELETE = object()
REFUSED = [
    ({"queues": DELETE}, "queues: missing (a team's config sets it"),
    ({"selectors.exporterSelector": DELETE}, "selectors.exporterSelector: missing"),
    ({"selectors.beatSelector": DELETE}, "selectors.beatSelector: missing"),
    (
        {"selectors.beatSelector": 'job="billing-worker"'},
        "selectors.beatSelector: must select other targets",
    ),
    ({"alerts.CeleryWorkerDonw": {"for": "2m"}}, "alerts.CeleryWorkerDonw: unknown key"),
    ({"workerConcurrency": "4"}, "workerConcurrency: '4' must be a whole number"),
    ({"workerConcurrency": True}, "workerConcurrency: True must be a whole number"),
    ({"workerConcurrency": 0}, "workerConcurrency: 0 must be at least 1"),
    ({"keda.maxReplicas": 0}, "keda.maxReplicas: 0 must be at least 1"),
    (
        {"alerts.CeleryWorkerDown.for": "2 minutes"},
        "alerts.CeleryWorkerDown.for: '2 minutes' is not",
    ),
    (
        {"slo.queueWait.page": [{"burnRate": 14.4, "long": "1h"}]},
        "slo.queueWait.page[0].short: missing",
    ),
    ({"alerts.CeleryTaskFailureRateHigh.maxRatio": 10}, "maxRatio: 10 is a fraction"),
    (
        {"selectors.workerSelector": "billing-worker"},
        "selectors.workerSelector: 'billing-worker' must be label matchers",
    ),
    ({"queues": ["invoices", "invoices"]}, "queues[1]: 'invoices' is listed twice"),
    ({"queues": []}, "queues: must name at least one queue"),
    ({"queues": "invoices"}, "queues: must be a list"),
    ({"name": "Billing Team"}, "name: 'Billing Team' must be lower-case letters"),
    (
        {"kubernetes.namespace": "Billing_NS"},
        "kubernetes.namespace: 'Billing_NS' is not a Kubernetes name",
    ),
    (
        {"kubernetes.ruleLabels": {"release": 1}},
        "kubernetes.ruleLabels: 'release': names and values",
    ),
    ({"slo.queueWait.thresholdSeconds": 31}, "not a bucket bound"),
    ({"dashboards.runbookBase": "RUNBOOK.md"}, "dashboards.runbookBase: must be an http(s) URL"),
]


@pytest.mark.parametrize(("change", "said"), REFUSED, ids=[r[1].split(":")[0] for r in REFUSED])
def test_a_bad_config_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], said: str
) -> None:
    config = write(tmp_path / "their.yaml", with_change(change))
    assert generate.main(["--config", str(config), "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{config}: ") and said in line, line
    assert not (tmp_path / "out").exists()


def test_a_config_that_is_not_yaml_or_not_there_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: billing\nqueues: [invoices\n")
    assert generate.main(["--config", str(broken), "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{broken}: not valid YAML at line "), line
    assert generate.main(["--config", str(tmp_path / "absent.yaml")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"{tmp_path / 'absent.yaml'}: cannot read it: No such file or directory"


def test_our_own_config_needs_no_site_keys_of_a_team() -> None:
    # dashboards/config.yaml is read as is, and is also the defaults a team's config overrides
    assert generate.main(["--config", str(CONFIG), "--check"]) == 0


def test_a_folder_that_cannot_be_written_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the folder should go")
    config = write(tmp_path / "their.yaml", THEIRS)
    assert generate.main(["--config", str(config), "--out", str(blocker)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{blocker}/") and ": cannot write it: " in line, line
