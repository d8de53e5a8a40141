"""The benchmark harness runs end to end (N=200, one pair); no speed is judged here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.worker_process import ROOT

pytestmark = pytest.mark.integration


def run_bench(output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench --smoke`` on no-op tasks, on the benchmark's own Redis database."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--tasks",
            "bench_noop",
            "--output",
            str(output),
            "--redis-url",
            "redis://localhost:6379/12",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_bench_smoke_run_writes_every_variant(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    done = run_bench(output)
    report = json.loads(output.read_text())
    rows = {row["variant"]: row for row in report["drain"]["bench_noop"]}
    assert set(rows) == {"off", "off_aa", "metrics", "tracing", "all_on", "events"}
    assert rows["off"]["ratio_median"] == 1.0
    assert all(
        row["tasks_per_second_median"] > 0 and row["cpu_us_per_task_median"] > 0
        for row in rows.values()
    )
    assert "tasks/s" in done.stdout
    assert all(len(row["rounds"]) == 1 for row in rows.values())
    # CPU is split by process role; only a tracing worker has an export process (200 spans may
    # cost it less than one clock tick, so its share is only known not to be negative)
    by_role = {name: row["cpu_us_per_task_by_role_median"] for name, row in rows.items()}
    assert all(set(roles) == {"main", "child", "export"} for roles in by_role.values())
    assert all(roles["main"] > 0 and roles["child"] > 0 for roles in by_role.values())
    assert by_role["off"]["export"] == 0 and by_role["all_on"]["export"] >= 0
    assert sum(by_role["all_on"].values()) == pytest.approx(
        rows["all_on"]["cpu_us_per_task_median"]
    )
    # The verdict names the control's state and the must measured on this task
    verdict = report["verdict"]["bench_noop"]
    assert verdict["session_counts"] in (True, False)
    assert {name: t["statistic"] for name, t in verdict["targets"].items()} == {
        "metrics": "upper_end",
        "all_on": "median",
    }
    assert "bench_noop: session " in done.stdout
    # The session is bracketed by a CPU-speed check of every CPU
    for end in ("before", "after"):
        check = verdict["steadiness"][end]
        assert check["samples"] == 3 and check["spread"] >= 1.0
        assert len(check["cpus"]) == len(os.sched_getaffinity(0))
    assert "bench_noop: before, CPU speed: loop cpu" in done.stdout
    # And the scrape, producer, span-cost and memory figures are there too
    assert [row["handlers"] for row in report["spans"]["sets"]][:2] == ["none", "lean"]
    assert [row["variant"] for row in report["producer"]] == ["plain", "installed", "traced"]
    assert all(row["publishes_per_second_median"] > 0 for row in report["producer"])
    render = {row["pairs"]: row for row in report["scrape"]["render"]}
    assert set(render) == {200, 800} and render[800]["size_bytes"] > render[200]["size_bytes"] > 0
    assert [row["round_trips"] for row in report["scrape"]["depth_poll"]] == [1, 1]
    roles = [row["process"] for row in report["memory"]["processes"]]
    assert sorted(roles) == ["child", "child", "export", "main"]
    assert report["memory"]["tasks"] == 400


def test_bench_hammer_smoke_scrapes_while_draining(tmp_path: Path) -> None:
    output = tmp_path / "hammer.json"
    run_bench(output, "--suite", "hammer")
    assert "memory" not in json.loads(output.read_text())
    rows = {row["variant"]: row for row in json.loads(output.read_text())["drain"]["bench_noop"]}
    assert set(rows) == {"metrics", "metrics_aa", "hammered"}
    assert rows["hammered"]["scrapes"] > 0 and rows["hammered"]["scrape_failures"] == 0
    assert rows["metrics"]["scrapes"] == 0


def test_bench_otlp_smoke_compares_metrics_over_otlp_with_metrics(tmp_path: Path) -> None:
    output = tmp_path / "otlp.json"
    done = run_bench(output, "--suite", "otlp")
    report = json.loads(output.read_text())
    rows = {row["variant"]: row for row in report["drain"]["bench_noop"]}
    assert set(rows) == {"metrics_sdk", "metrics_sdk_aa", "metrics_otlp", "metrics"}
    assert rows["metrics_sdk"]["ratio_median"] == 1.0
    assert all(row["tasks_per_second_median"] > 0 for row in rows.values())
    targets = report["verdict"]["bench_noop"]["targets"]
    assert {name: t["statistic"] for name, t in targets.items()} == {"metrics_otlp": "upper_end"}
    assert "bench_noop: metrics_otlp must (upper_end >= 0.99)" in done.stdout
