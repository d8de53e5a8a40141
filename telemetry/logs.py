"""Log setup for every worker process: ``LOG_FORMAT=text`` or ``json``.

Connected to Celery's ``setup_logging`` signal, so Celery leaves the root
logger to us. JSON lines carry a fixed set of keys; ``extra`` data attached by
Celery (which includes task arguments) is never written.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from celery._state import get_current_task
from celery.app import trace as celery_trace
from celery.exceptions import Reject
from opentelemetry import trace

from telemetry.messages import RUN_SPAN, RUN_SPAN_ID, RUN_TRACE_ID

TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(processName)s[%(process)d] %(name)s: %(message)s%(task_suffix)s"
)
SUCCESS_WITHOUT_RESULT = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"
POOL_APPLY = "TaskPool: Apply %s (args:%s kwargs:%s)"
POOL_APPLY_WITHOUT_MESSAGE = "TaskPool: Apply %s (message not logged)"
#: Attributes other modules may attach to records (e.g. trace ids) that JSON lines keep.
CORRELATION_FIELDS = ("task_id", "task_name", "trace_id", "span_id")


class TaskContextFilter(logging.Filter):
    """Adds ``task_id``/``task_name`` of the task running in this process, if any,
    and ``trace_id``/``span_id`` of its ``run`` span when tracing is on.

    The ids are read from the task's request, where the worker put them when it
    received the delivery (``telemetry.messages.RUN_SPAN``): Celery logs a line
    per task, and asking for the current span would build it every time. Only a
    request without them (a task run outside a worker's delivery) asks."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = get_current_task()
        request = getattr(task, "request", None) if task is not None else None
        task_id = getattr(request, "id", None)
        if task_id and not hasattr(record, "task_id"):
            record.task_id = task_id
            record.task_name = task.name
            run = getattr(request, RUN_SPAN, None)
            if type(run) is tuple:
                record.trace_id = f"{run[RUN_TRACE_ID]:032x}"
                record.span_id = f"{run[RUN_SPAN_ID]:016x}"
            else:
                span_context = trace.get_current_span().get_span_context()
                if span_context.is_valid:
                    record.trace_id = f"{span_context.trace_id:032x}"
                    record.span_id = f"{span_context.span_id:016x}"
        suffix = ""
        current_id = getattr(record, "task_id", None)
        if current_id:
            suffix = f" [task={getattr(record, 'task_name', '')} id={current_id}"
            trace_id = getattr(record, "trace_id", None)
            if trace_id:
                suffix += f" trace_id={trace_id} span_id={getattr(record, 'span_id', '')}"
            suffix += "]"
        record.task_suffix = suffix
        return True


class CeleryTraceFilter(logging.Filter):
    """Keeps Celery's per-task lines free of task data, and single.

    * The "succeeded" line loses its return value, which may echo arguments.
    * The pool's DEBUG "Apply" line loses the raw message it would print.
    * The traceback for ``Reject(requeue=False)`` is dropped: the main process
      logs the one dead-letter line for that message.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "celery.pool" and record.msg == POOL_APPLY:
            # DEBUG: the raw message (headers and body, so the arguments) follows.
            target = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = POOL_APPLY_WITHOUT_MESSAGE, (target,)
            return True
        if record.name != "celery.app.trace":
            return True
        if record.msg == celery_trace.LOG_SUCCESS:
            record.msg = SUCCESS_WITHOUT_RESULT
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, Reject) and not exc.requeue)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        for field in CORRELATION_FIELDS:
            value = getattr(record, field, None)
            if value:
                line[field] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, fmt: str) -> None:
    """Replace the root handlers with one stderr handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CeleryTraceFilter())
    handler.addFilter(TaskContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
