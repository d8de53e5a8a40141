"""Stores dead letters, logs them and announces them; shared by every interception point."""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import Any

import redis
from celery import Celery
from kombu.connection import Connection

from telemetry.deadletters.policy import DEFAULT_POLICY, PoisonPolicy
from telemetry.deadletters.records import Reason, log_dead_lettered, make_record
from telemetry.delivery.observers import OBSERVERS
from telemetry.failed.locate import deadletter_store
from telemetry.failed.records import FailedRecord
from telemetry.failed.store import FailedStore

logger = logging.getLogger("telemetry.deadletters")


class DeadLetterWriter:
    """Writes records to the broker's dead letters (``telemetry.failed.store``).

    If the broker refuses the write (it may have gone down right after handing
    us the item), the record waits in memory, capped like the set itself, and
    is written before the next one: a dead letter is not dropped on a blip.
    """

    def __init__(self, store: FailedStore) -> None:
        self.store = store
        self._pending: deque[FailedRecord] = deque(maxlen=store.caps.max_records)

    @classmethod
    def for_connection(
        cls, connection: Connection, policy: PoisonPolicy = DEFAULT_POLICY
    ) -> DeadLetterWriter:
        """The dead letters on the broker ``connection`` points at, under its key prefix,
        capped as ``policy`` says."""
        return cls(deadletter_store(connection, policy))

    @classmethod
    def for_app(cls, celery_app: Celery, policy: PoisonPolicy = DEFAULT_POLICY) -> DeadLetterWriter:
        with celery_app.connection_for_read() as connection:
            return cls.for_connection(connection, policy)

    def write(
        self,
        queue: str,
        reason: Reason,
        task: str | None,
        task_id: str | None,
        raw: bytes | str,
        *,
        refused: bool = True,
    ) -> FailedRecord:
        """Store, log and announce one dead letter.

        ``refused`` is true for deliveries dead-lettered before any Request
        existed for them (the transport and consumer paths); their delivery
        ends here, with the outcome ``rejected``.
        """
        record = make_record(queue, reason, task, task_id, raw)
        log_dead_lettered(record)
        self._pending.append(record)
        self.flush()
        OBSERVERS.dead_lettered(queue, task, reason.value, refused)
        return record

    def write_message(
        self, message: Any, reason: Reason, task: str | None = None, *, refused: bool = True
    ) -> FailedRecord:
        """Dead-letter a kombu Message, storing the envelope kombu kept."""
        raw = getattr(message, "_raw", None)
        text = json.dumps(raw) if raw is not None else ""
        headers = message.headers if isinstance(message.headers, dict) else {}
        delivery_info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
        queue = str(delivery_info.get("routing_key") or "unknown")
        task_id = headers.get("id")
        name = task or headers.get("task")
        return self.write(
            queue,
            reason,
            name if isinstance(name, str) else None,
            task_id if isinstance(task_id, str) else None,
            text,
            refused=refused,
        )

    @property
    def held(self) -> int:
        """Records waiting in memory for the broker to take them."""
        return len(self._pending)

    def flush(self) -> None:
        while self._pending:
            record = self._pending[0]
            try:
                self.store.write(record)
            except redis.RedisError as exc:
                logger.error(
                    "could not store dead letter from %s (%s, id=%s): %s; %d held in memory",
                    record.queue,
                    record.reason,
                    record.task_id or "-",
                    type(exc).__name__,
                    len(self._pending),
                )
                return
            self._pending.popleft()
