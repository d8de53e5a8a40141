"""One failed-work record, of either kind, and the summary the listings read.

    record = FailedRecord.new(Kind.EXHAUSTED, queue="default", task="t", ...)
    record.to_json()                       # what the store keeps under record.id
    FailedRecord.from_json(id, stored)     # also reads the old dead-letter list's records

Two kinds share the model:

* ``dead_letter``: a message the worker could not run (``telemetry.deadletters``),
  with the reason it was refused;
* ``exhausted``: a task whose last attempt failed and whose message was
  acknowledged (``telemetry.failed.exhausted``); its reason is ``exhausted``.

``raw`` is the message as kombu's Redis transport stores it (the envelope with
headers, properties and body), as text: enough to publish it again. A dead
letter keeps the item exactly as popped, even when it is not JSON.

The summary is what a listing filters on and shows; it is stored apart from
the record, so that a listing never reads envelopes and tracebacks. Its
``message`` is already free of argument text (``telemetry.failed.redaction``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from telemetry.failed.redaction import redact

#: Exception messages and tracebacks are cut to these many UTF-8 bytes.
MAX_MESSAGE_BYTES = 2048
MAX_TRACEBACK_BYTES = 16384
TRUNCATED = "[truncated]"
#: The record layout; the old dead-letter list's records have none.
VERSION = 2


class Kind(StrEnum):
    DEAD_LETTER = "dead_letter"
    EXHAUSTED = "exhausted"


#: The reason of every exhausted record.
EXHAUSTED_REASON = "exhausted"
#: What a listing item holds, in this order.
SUMMARY_FIELDS = (
    "kind",
    "queue",
    "task",
    "task_id",
    "reason",
    "exception",
    "message",
    "failed_at",
    "retries",
    "trace_id",
)


def _over(text: str | None, limit: int) -> bytes | None:
    """``text``'s UTF-8 bytes when they exceed ``limit``; None when it fits (or is None)."""
    if text is None or len(text) * 4 <= limit:
        return None
    data = text.encode("utf-8", "surrogatepass")
    return data if len(data) > limit else None


def cut_head(text: str | None, limit: int) -> str | None:
    """``text`` within ``limit`` UTF-8 bytes, keeping its start."""
    data = _over(text, limit)
    if data is None:
        return text
    return data[: limit - len(TRUNCATED) - 1].decode("utf-8", "ignore") + " " + TRUNCATED


def cut_tail(text: str | None, limit: int) -> str | None:
    """``text`` within ``limit`` UTF-8 bytes, keeping its end (a traceback's exception line)."""
    data = _over(text, limit)
    if data is None:
        return text
    return TRUNCATED + "\n" + data[-(limit - len(TRUNCATED) - 1) :].decode("utf-8", "ignore")


@dataclass(frozen=True)
class FailedRecord:
    """A record as stored; ``arguments`` counts the task's args and kwargs (for redaction)."""

    id: str
    kind: str
    queue: str
    task: str | None
    task_id: str | None
    reason: str
    failed_at: float
    raw: str
    retries: int | None = None
    exception: str | None = None
    message: str | None = None
    traceback: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    hostname: str | None = None
    arguments: tuple[int, int] | None = None
    v: int = field(default=VERSION)

    @classmethod
    def new(cls, kind: Kind, **fields: Any) -> FailedRecord:
        """A record with a fresh UUID, failed now unless ``failed_at`` is given;
        the message and traceback cut to their limits."""
        fields.setdefault("failed_at", time.time())
        fields["message"] = cut_head(fields.get("message"), MAX_MESSAGE_BYTES)
        fields["traceback"] = cut_tail(fields.get("traceback"), MAX_TRACEBACK_BYTES)
        return cls(id=str(uuid.uuid4()), kind=kind.value, **fields)

    def to_json(self) -> str:
        # ensure_ascii keeps undecodable bytes (carried as surrogate escapes)
        # round-trippable and the record readable in redis-cli.
        return json.dumps(asdict(self), ensure_ascii=True, separators=(",", ":"))

    def summary(self) -> dict[str, Any]:
        """The listing's fields, the message without argument text."""
        item = {name: getattr(self, name) for name in SUMMARY_FIELDS}
        item["message"] = redact(self.message, self.arguments)
        return item

    def summary_json(self) -> str:
        return json.dumps(self.summary(), ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, record_id: str, text: str | bytes) -> FailedRecord:
        """A stored record; one that is not a JSON object is kept whole as ``raw``."""
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raw = text.decode("utf-8", "surrogateescape") if isinstance(text, bytes) else text
            return cls.from_legacy(record_id, {"raw": raw})
        if "v" not in data:
            return cls.from_legacy(record_id, data)
        arguments = data.get("arguments")
        return cls(
            id=record_id,
            kind=str(data.get("kind") or Kind.DEAD_LETTER.value),
            queue=str(data.get("queue") or "unknown"),
            task=data.get("task"),
            task_id=data.get("task_id"),
            reason=str(data.get("reason") or "unknown"),
            failed_at=float(data.get("failed_at") or 0.0),
            raw=str(data.get("raw") or ""),
            retries=data.get("retries"),
            exception=data.get("exception"),
            message=data.get("message"),
            traceback=data.get("traceback"),
            trace_id=data.get("trace_id"),
            span_id=data.get("span_id"),
            hostname=data.get("hostname"),
            arguments=(int(arguments[0]), int(arguments[1]))
            if isinstance(arguments, list)
            else None,
            v=int(data["v"]),
        )

    @classmethod
    def from_legacy(cls, record_id: str, data: dict[str, Any]) -> FailedRecord:
        """A record of the old dead-letter list: queue, reason, task, id, received_at, raw."""
        return cls(
            id=record_id,
            kind=Kind.DEAD_LETTER.value,
            queue=str(data.get("queue") or "unknown"),
            task=data.get("task"),
            task_id=data.get("id"),
            reason=str(data.get("reason") or "unknown"),
            failed_at=float(data.get("received_at") or 0.0),
            raw=str(data.get("raw") or ""),
        )

    def raw_bytes(self) -> bytes:
        return self.raw.encode("utf-8", "surrogateescape")


def summary_from_data(record_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """A parsed summary as a listing item: ``id`` first, then :data:`SUMMARY_FIELDS`."""
    return {"id": record_id, **{name: data.get(name) for name in SUMMARY_FIELDS}}


def summary_from_json(record_id: str, text: str | bytes) -> dict[str, Any]:
    return summary_from_data(record_id, json.loads(text))
