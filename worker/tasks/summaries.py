"""``records_summary``: the work summary beat sends every five minutes (``worker.celery_app``).

One log line and a small result: how many records the example tasks wrote, and
how many of them ran more than once (a redelivery or a duplicate execution
that the idempotency key absorbed).
"""

from __future__ import annotations

import logging

from worker.celery_app import app, settings_of
from worker.db.bridge import run_async, session_for

logger = logging.getLogger("worker.tasks.summaries")


async def summarize_records(url: str) -> dict[str, int]:
    """Records written and records that ran more than once, in one query."""
    from sqlalchemy import func, select

    from worker.db.schema import example_records as table

    async with session_for(url) as session:
        row = (
            await session.execute(
                select(
                    func.count(),
                    func.count().filter(table.c.executions > 1),
                ).select_from(table)
            )
        ).one()
    return {"records": int(row[0]), "ran_more_than_once": int(row[1])}


@app.task(name="records_summary", ignore_result=True)
def records_summary() -> dict[str, int]:
    summary = run_async(summarize_records(settings_of(app).effective_database_url))
    logger.info(
        "records: %d written, %d ran more than once",
        summary["records"],
        summary["ran_more_than_once"],
    )
    return summary
