"""The audit trail of every write: a capped Redis stream on the broker, and one log line.

    audit = AuditLog(client, "jobpilot:ops:audit")
    audit.record("requeue", {"filter": {...}}, {"matched": 3, "requeued": 3, "skipped": {}},
                 client="127.0.0.1", dry_run=False)

``redis-cli XREVRANGE jobpilot:ops:audit + - COUNT 10`` shows the latest. Each
entry holds ``time`` (RFC 3339), ``action``, ``dry_run``, ``selection`` (the
ids, at most :data:`MAX_AUDITED_IDS` of them and their count, or the filter),
``result`` (the counts) and ``client`` (its address, or ``cli:<user>@<host>``),
as JSON where a value is structured. The stream keeps about
:data:`MAX_ENTRIES` entries (``XADD MAXLEN ~``). An entry that cannot be stored
is logged as an error; the log line is written either way.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from telemetry.failed.query import rfc3339

logger = logging.getLogger("telemetry.ops.audit")

AUDIT_KEY = "jobpilot:ops:audit"
MAX_ENTRIES = 10_000
MAX_AUDITED_IDS = 1000


def audit_key(prefix: str) -> str:
    return f"{prefix}{AUDIT_KEY}"


def _bounded(selection: dict[str, Any]) -> dict[str, Any]:
    ids = selection.get("ids")
    if ids is None or len(ids) <= MAX_AUDITED_IDS:
        return selection
    return {**selection, "ids": ids[:MAX_AUDITED_IDS], "ids_count": len(ids)}


class AuditLog:
    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key

    def record(
        self,
        action: str,
        selection: dict[str, Any],
        result: dict[str, Any],
        *,
        client: str,
        dry_run: bool,
    ) -> None:
        selection = _bounded(selection)
        entry = {
            "time": rfc3339(time.time()),
            "action": action,
            "dry_run": json.dumps(dry_run),
            "selection": json.dumps(selection, separators=(",", ":")),
            "result": json.dumps(result, separators=(",", ":")),
            "client": client,
        }
        ids = selection.get("ids")
        target = (
            f"{selection.get('ids_count', len(ids))} id(s)"
            if ids is not None
            else f"filter {json.dumps(selection.get('filter', {}), separators=(',', ':'))}"
        )
        logger.info(
            "ops: %s%s of %s from %s: %s",
            action,
            " (dry run)" if dry_run else "",
            target,
            client,
            entry["result"],
        )
        try:
            self.client.xadd(self.key, entry, maxlen=MAX_ENTRIES, approximate=True)  # type: ignore[arg-type]
        except redis.RedisError as exc:
            logger.error("ops: audit entry for %s not stored: %s", action, type(exc).__name__)

    def entries(self, count: int = 10) -> list[dict[str, str]]:
        """The newest entries, newest first."""
        found: list[tuple[Any, dict[Any, Any]]] = self.client.xrevrange(  # type: ignore[assignment]
            self.key, count=count
        )
        return [{_text(k): _text(v) for k, v in fields.items()} for _, fields in found]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
