"""The dead-letter record, its reasons, its log line and its signal."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

logger = logging.getLogger("telemetry.deadletters")

DEADLETTER_KEY = "jobpilot:deadletter"
UNKNOWN_TASK_NAME = "unknown"


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


@dataclass(frozen=True)
class DeadLetter:
    """One record of the list, as JSON: ``raw`` is the item exactly as popped."""

    queue: str
    reason: str
    task: str | None
    id: str | None
    received_at: float
    raw: str

    def to_json(self) -> str:
        # ensure_ascii keeps undecodable bytes (carried as surrogate escapes)
        # round-trippable and the record readable in redis-cli.
        return json.dumps(asdict(self), ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> DeadLetter:
        data = json.loads(text)
        return cls(
            **{k: data.get(k) for k in ("queue", "reason", "task", "id", "received_at", "raw")}
        )

    def raw_bytes(self) -> bytes:
        return self.raw.encode("utf-8", "surrogateescape")


def make_record(
    queue: str, reason: Reason, task: str | None, task_id: str | None, raw: bytes | str
) -> DeadLetter:
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "surrogateescape")
    return DeadLetter(queue, reason.value, task, task_id, time.time(), text)


def deadletter_key(prefix: str) -> str:
    return f"{prefix}{DEADLETTER_KEY}"


def app_deadletter_key(app: Any) -> str:
    """The list's key for a Celery app: under its broker's ``global_keyprefix``."""
    options = app.conf.broker_transport_options or {}
    return deadletter_key(str(options.get("global_keyprefix", "")))


def log_dead_lettered(record: DeadLetter) -> None:
    """Exactly one line per dead letter; it never carries the body or arguments."""
    logger.warning(
        "dead-lettered message from %s: %s (task=%s, id=%s)",
        record.queue,
        record.reason,
        record.task or UNKNOWN_TASK_NAME,
        record.id or "-",
    )
