"""The README's demo mode runs end to end and prints its per-queue table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.support.worker_process import ROOT, free_port

pytestmark = pytest.mark.integration


def test_demo_prints_what_happened_on_every_queue(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": "redis://localhost:6379/13",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.db",
        "METRICS_PORT": str(free_port()),
    }
    schema = subprocess.run(
        [sys.executable, "-m", "worker.db.schema"], cwd=ROOT, env=env, capture_output=True
    )
    assert schema.returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "worker.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.split("wait p50")[1].splitlines()[1:5]
    rows = {line.split()[0]: line.split() for line in table}
    assert set(rows) == {"agents", "briefings", "scraping", "default"}
    assert rows["agents"][2:5] == ["5", "5", "0"]  # started, succeeded, failed
    assert rows["default"][2:5] == ["6", "5", "1"]
    assert all(row[5].endswith("ms") for row in rows.values())  # wait p50 measured from the header
    assert "new dead letters: 1" in done.stdout
