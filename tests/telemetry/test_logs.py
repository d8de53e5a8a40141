"""Log filters: Celery's own lines never carry task data."""

from __future__ import annotations

import logging

from telemetry.logs import POOL_APPLY, CeleryTraceFilter


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.DEBUG, __file__, 1, msg, args, None)


def test_the_pool_apply_line_loses_the_raw_message() -> None:
    line = record(
        "celery.pool", POOL_APPLY, "<function fast_trace_task>", "('t', b'[[\"secret\"]]')", "{}"
    )
    assert CeleryTraceFilter().filter(line)
    assert line.getMessage() == "TaskPool: Apply <function fast_trace_task> (message not logged)"


def test_other_lines_pass_unchanged() -> None:
    line = record("celery.worker", "hello %s", "world")
    assert CeleryTraceFilter().filter(line) and line.getMessage() == "hello world"
