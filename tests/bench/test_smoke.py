"""The benchmark harness runs end to end (N=200, one pair); no speed is judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.worker_process import ROOT

pytestmark = pytest.mark.integration


def test_bench_smoke_run_writes_every_variant(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
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
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    rows = {row["variant"]: row for row in report["drain"]["bench_noop"]}
    assert set(rows) == {"off", "off_aa", "metrics", "all_on", "events"}
    assert rows["off"]["ratio_median"] == 1.0
    assert all(
        row["tasks_per_second_median"] > 0 and row["cpu_us_per_task_median"] > 0
        for row in rows.values()
    )
    assert "tasks/s" in done.stdout
