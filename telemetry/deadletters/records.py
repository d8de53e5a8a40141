"""The dead-letter reasons, the record a dead letter becomes, and its log line."""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from typing import Any

from telemetry.failed.records import FailedRecord, Kind
from telemetry.messages import sampled_trace_id

logger = logging.getLogger("telemetry.deadletters")

#: The dead letters' base key, under the broker's key prefix (the keys under it:
#: ``telemetry.failed.store``). It was a list before the failed-work set, which drains it.
DEADLETTER_KEY = "jobpilot:deadletter"
UNKNOWN_TASK_NAME = "unknown"
#: Items longer than this are stored without being read for their retries and trace.
MAX_PARSED_BYTES = 1_048_576


class Reason(StrEnum):
    NOT_JSON = "not_json"
    BAD_ENVELOPE = "bad_envelope"
    MISSING_HEADER = "missing_header"
    CONTENT_TYPE = "content_type"
    BAD_BODY = "bad_body"
    UNKNOWN_TASK = "unknown_task"
    TOO_LARGE = "too_large"
    BAD_ARGUMENTS = "bad_arguments"
    WORKER_LOST = "worker_lost"


#: Reasons whose item is known not to be a readable envelope.
_UNREADABLE = frozenset({Reason.NOT_JSON, Reason.TOO_LARGE, Reason.BAD_ENVELOPE})


def _headers_of(raw: str, reason: Reason) -> dict[str, Any]:
    if reason in _UNREADABLE or len(raw) > MAX_PARSED_BYTES:
        return {}
    try:
        envelope = json.loads(raw)
    except (RecursionError, ValueError):
        return {}
    headers = envelope.get("headers") if isinstance(envelope, dict) else None
    return headers if isinstance(headers, dict) else {}


def make_record(
    queue: str, reason: Reason, task: str | None, task_id: str | None, raw: bytes | str
) -> FailedRecord:
    """A dead letter: ``raw`` is the item exactly as popped (or the envelope kombu kept)."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "surrogateescape")
    headers = _headers_of(text, reason)
    retries = headers.get("retries")
    return FailedRecord.new(
        Kind.DEAD_LETTER,
        queue=queue,
        task=task,
        task_id=task_id,
        reason=reason.value,
        raw=text,
        retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else None,
        trace_id=sampled_trace_id(headers),
    )


def deadletter_key(prefix: str) -> str:
    return f"{prefix}{DEADLETTER_KEY}"


def app_deadletter_key(app: Any) -> str:
    """The dead letters' base key for a Celery app: under its broker's ``global_keyprefix``."""
    options = app.conf.broker_transport_options or {}
    return deadletter_key(str(options.get("global_keyprefix", "")))


def log_dead_lettered(record: FailedRecord) -> None:
    """Exactly one line per dead letter; it never carries the body or arguments."""
    logger.warning(
        "dead-lettered message from %s: %s (task=%s, id=%s)",
        record.queue,
        record.reason,
        record.task or UNKNOWN_TASK_NAME,
        record.task_id or "-",
    )
