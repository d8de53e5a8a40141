"""The tables, and an idempotent schema command.

    python -m worker.db.schema          # creates missing tables, changes nothing else

Importing this module imports SQLAlchemy: only task bodies and the command do.
"""

from __future__ import annotations

import sys

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, func

from worker.db.bridge import engine_for, run_async

metadata = MetaData()

example_records = Table(
    "example_records",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The caller's idempotency key: a redelivered task updates its row instead
    # of adding one, and `executions` counts how often it ran.
    Column("key", String(200), nullable=False, unique=True),
    Column("task_id", String(64), nullable=False),
    Column("queue", String(200), nullable=False),
    Column("payload_summary", String(500), nullable=False),
    Column("executions", Integer, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


async def create_schema(url: str) -> None:
    async with engine_for(url).begin() as connection:
        await connection.run_sync(metadata.create_all, checkfirst=True)


def main() -> int:
    from worker.settings import SettingsError, load_settings
    from worker.urls import redact_url

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    url = settings.effective_database_url
    run_async(create_schema(url))
    print(f"schema ready at {redact_url(url)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
