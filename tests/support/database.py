"""The test Postgres from the command line: ``psql`` and the schema command."""

from __future__ import annotations

import subprocess
import sys

from tests.support.worker_process import ROOT


def psql(sql: str) -> str:
    done = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-tAc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def schema_command(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "worker.db.schema"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
