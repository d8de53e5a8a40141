"""The async DB bridge: example_task on Postgres and SQLite, lazy imports, no leaks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.database import psql, schema_command
from tests.support.worker_process import ROOT, WorkerProcess
from worker.celery_app import app

pytestmark = pytest.mark.integration

DB_MODULES = ("sqlalchemy", "asyncpg", "aiosqlite")


def test_schema_command_is_idempotent(postgres_url: str) -> None:
    first, second = schema_command(postgres_url), schema_command(postgres_url)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "postgres@" not in first.stdout or "***@" in first.stdout
    assert psql("SELECT count(*) FROM example_records") == "0"


def test_example_task_writes_to_postgres_once_per_key(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], postgres_url: str
) -> None:
    # Given the schema and a worker on Postgres
    assert schema_command(postgres_url).returncode == 0
    start_worker({**worker_env, "DATABASE_URL": postgres_url})
    # When the same key is recorded twice (a redelivery) and another key once
    first = app.send_task("example_task", args=["order-1", {"amount": 3}]).get(timeout=30)
    again = app.send_task("example_task", args=["order-1", {"amount": 3}]).get(timeout=30)
    other = app.send_task("example_task", args=["order-2"]).get(timeout=30)
    # Then the key has one row, counted twice, and the row id is returned
    assert first == again != other
    rows = psql("SELECT key, queue, payload_summary, executions FROM example_records ORDER BY id")
    assert rows.splitlines() == ["order-1|default|1 keys: amount|2", "order-2|default|0 keys: |1"]


def test_example_task_writes_to_sqlite_under_the_default(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], tmp_path: Path
) -> None:
    database_url = worker_env["DATABASE_URL"]
    assert schema_command(database_url).returncode == 0
    start_worker(worker_env)
    row_id = app.send_task("example_task", args=["k-1", {}]).get(timeout=30)
    assert isinstance(row_id, int) and row_id >= 1
    import sqlite3

    with sqlite3.connect(tmp_path / "jobpilot.db") as connection:
        assert connection.execute("SELECT key, executions FROM example_records").fetchall() == [
            ("k-1", 1)
        ]


def test_pool_processes_never_load_the_database_stack(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], postgres_url: str
) -> None:
    # Given a worker configured for Postgres, whose pool has run only non-DB tasks
    start_worker(
        {**worker_env, "DATABASE_URL": postgres_url}, extra_args=("--max-tasks-per-child", "50")
    )
    for _ in range(4):
        app.send_task("briefing_compile", args=["t", ["a text"]])
        loaded = app.send_task("tests.loaded_modules").get(timeout=15)
        # Then no pool process has imported SQLAlchemy or a driver
        assert not [m for m in loaded["modules"] if m.split(".")[0] in DB_MODULES]


def test_the_main_process_does_not_load_the_database_stack() -> None:
    # Given DATABASE_URL unset, the app fully configured and its tasks imported
    code = (
        "import sys, worker; app = worker.app; app.loader.import_default_modules(); "
        "app.conf.broker_url; app.tasks['example_task']; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy','asyncpg','aiosqlite'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_no_connection_leaks_after_500_tasks(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], postgres_url: str
) -> None:
    assert schema_command(postgres_url).returncode == 0
    count_ours = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'test' AND pid <> pg_backend_pid()"
    )
    start_worker({**worker_env, "DATABASE_URL": postgres_url})
    app.send_task("example_task", args=["warm-up"]).get(timeout=30)
    before = int(psql(count_ours))
    results = [app.send_task("example_task", args=[f"leak-{n}"]) for n in range(500)]
    assert all(isinstance(r.get(timeout=120), int) for r in results)
    after = int(psql(count_ours))
    assert after <= before
    assert psql("SELECT count(*) FROM example_records") == "501"
