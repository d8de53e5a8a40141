"""``example_task``: a database write through the async bridge, idempotent by key."""

from __future__ import annotations

import random
from typing import Any

from celery import Task
from celery.exceptions import Reject

from worker.celery_app import app, settings_of
from worker.db.bridge import run_async, session_for

MAX_KEY_LENGTH = 200
MAX_SUMMARY_LENGTH = 500
MAX_RETRIES = 10
# Exponential backoff from 1 s, capped well under MAX_RETRY_COUNTDOWN's default.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0


def summarize(payload: dict[str, Any]) -> str:
    """What the row keeps of the payload: its keys and size, never its values."""
    keys = ",".join(sorted(str(k) for k in payload))
    return f"{len(payload)} keys: {keys}"[:MAX_SUMMARY_LENGTH]


def backoff_seconds(retries: int) -> float:
    """Full-jitter exponential backoff, so a recovering database is not stampeded."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**retries)
    return random.uniform(ceiling / 2, ceiling)


def is_transient(exc: BaseException) -> bool:
    """A database error worth retrying: the server is unreachable or went away."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(
        exc, OperationalError | InterfaceError | OSError | ConnectionError | TimeoutError
    ):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


async def _record(url: str, key: str, task_id: str, queue: str, summary: str) -> int:
    from sqlalchemy import func, select

    from worker.db.schema import example_records as table

    async with session_for(url) as session:
        if url.startswith("postgresql"):
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            statement: Any = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            statement = sqlite_insert(table)
        statement = statement.values(key=key, task_id=task_id, queue=queue, payload_summary=summary)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "task_id": task_id,
                "executions": table.c.executions + 1,
                "updated_at": func.now(),
            },
        )
        await session.execute(statement)
        row_id: int = (
            await session.execute(select(table.c.id).where(table.c.key == key))
        ).scalar_one()
        return row_id


@app.task(bind=True, name="example_task", ignore_result=False, max_retries=MAX_RETRIES)
def example_task(self: Task, key: str, payload: dict[str, Any] | None = None) -> int:
    """Record ``key`` once (a redelivery updates the same row) and return the row id."""
    payload = {} if payload is None else payload
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise Reject(
            f"bad_arguments: key must be a non-empty string of at most {MAX_KEY_LENGTH}",
            requeue=False,
        )
    if not isinstance(payload, dict):
        raise Reject("bad_arguments: payload must be an object", requeue=False)
    url = settings_of(app).effective_database_url
    queue = (self.request.delivery_info or {}).get("routing_key") or "unknown"
    try:
        return run_async(_record(url, key, self.request.id, queue, summarize(payload)))
    except Exception as exc:
        if not is_transient(exc):
            raise
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from None
