"""The failed-work set of one kind on the broker: records by stable id, newest first.

    store = FailedStore(client, StoreKeys.of("jobpilot:exhausted"), Caps(10_000, 64 << 20, 604_800))
    store.write(record)              # one EVALSHA: write, drain, trim
    store.keep()                     # the size poll: drain and trim, no record
    store.window(since, until)       # [(id, failed_at)], newest first
    store.summaries(ids); store.records(ids); store.delete(ids)

Keys, under ``base`` (``<global_keyprefix>jobpilot:exhausted`` or
``<global_keyprefix>jobpilot:deadletter``):

* ``<base>:records``   hash, id -> the record's JSON (``FailedRecord``);
* ``<base>:summary``   hash, id -> its listing fields, read without the envelope;
* ``<base>:by_time``   sorted set, id scored by ``failed_at`` (Unix seconds);
* ``<base>:stored_bytes`` the two hashes' total size, for the byte cap.

Every change is one Lua script (``telemetry.failed.scripts``). Redis cannot
expire hash fields by age, so the age limit is kept by trimming, on every write
and every size poll. The dead letters' old list (``<base>`` itself, and
``<base>:bytes``) is drained into the set by the same script: workers not yet
upgraded in a rolling deploy may still push there.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from telemetry.failed.records import FailedRecord, summary_from_data, summary_from_json
from telemetry.failed.scripts import DELETE, KEEP, REQUEUE, SUMMARIES

logger = logging.getLogger("telemetry.failed")

#: Old-list items moved per script call; a call reports what is left, and callers loop.
DRAIN_BATCH = 64
#: Ids per HMGET or per DELETE call.
READ_BATCH = 1000


@dataclass(frozen=True)
class StoreKeys:
    base: str
    records: str
    summary: str
    by_time: str
    stored_bytes: str
    legacy: str
    legacy_bytes: str

    @classmethod
    def of(cls, base: str) -> StoreKeys:
        return cls(
            base,
            f"{base}:records",
            f"{base}:summary",
            f"{base}:by_time",
            f"{base}:stored_bytes",
            base,
            f"{base}:bytes",
        )

    @property
    def set_keys(self) -> list[str]:
        return [self.records, self.summary, self.by_time, self.stored_bytes]


@dataclass(frozen=True)
class Caps:
    """At most ``max_records`` and ``max_bytes``; records older than ``max_age`` seconds
    (by ``failed_at``) are trimmed; None keeps them until a cap trims them."""

    max_records: int
    max_bytes: int
    max_age: float | None = None


@dataclass(frozen=True)
class KeepResult:
    size: int
    stored_bytes: int
    trimmed_by_age: int
    trimmed_by_cap: int
    drained: int
    legacy_left: int


class FailedStore:
    """One kind's set on ``client`` (a plain redis-py client of the broker, prefixes explicit)."""

    def __init__(self, client: redis.Redis, keys: StoreKeys, caps: Caps) -> None:
        self.client = client
        self.keys = keys
        self.caps = caps
        self._keep: Script = client.register_script(KEEP)
        self._delete: Script = client.register_script(DELETE)
        self._requeue: Script = client.register_script(REQUEUE)
        self._summaries: Script = client.register_script(SUMMARIES)

    # Writing and keeping ---------------------------------------------------------
    def _keep_args(self, records: Sequence[FailedRecord], spare_ids: int) -> list[Any]:
        caps = self.caps
        args: list[Any] = [
            repr(time.time()),
            caps.max_records,
            caps.max_bytes,
            repr(float(caps.max_age or 0)),
            len(records),
        ]
        for record in records:
            args += [record.id, repr(record.failed_at), record.to_json(), record.summary_json()]
        args += [str(uuid.uuid4()) for _ in range(spare_ids)]
        return args

    def keep_in(self, pipe: Any, drain: int = DRAIN_BATCH) -> None:
        """Queue a :meth:`keep` on a pipeline (EVALSHA alone: no SCRIPT EXISTS round trip);
        read its reply with :meth:`kept`. A server without the script answers NOSCRIPT:
        call :meth:`load` and run the pipeline again."""
        keys = self.keys
        pipe.evalsha(
            self._keep.sha,
            6,
            *keys.set_keys,
            keys.legacy,
            keys.legacy_bytes,
            *self._keep_args([], drain),
        )

    def load(self) -> None:
        """Load the scripts into the server (after NOSCRIPT: a restart, a failover)."""
        for script in (self._keep, self._delete, self._requeue, self._summaries):
            script.sha = self.client.script_load(script.script)

    def kept(self, reply: Sequence[Any]) -> KeepResult:
        """A keep's reply, with its trims logged."""
        result = KeepResult(*(int(value) for value in reply))
        if result.trimmed_by_cap or result.trimmed_by_age:
            logger.warning(
                "%s: trimmed %d record(s) past the caps (%d records, %d bytes) and %d past "
                "the age limit",
                self.keys.base,
                result.trimmed_by_cap,
                self.caps.max_records,
                self.caps.max_bytes,
                result.trimmed_by_age,
            )
        return result

    def _run_keep(self, records: Sequence[FailedRecord], spare_ids: int) -> KeepResult:
        keys = self.keys
        reply = self._keep(
            keys=[*keys.set_keys, keys.legacy, keys.legacy_bytes],
            args=self._keep_args(records, spare_ids),
        )
        return self.kept(reply)

    def write(self, record: FailedRecord) -> KeepResult:
        """Add one record, trimming as needed; one round trip."""
        return self._run_keep([record], 0)

    def keep(self, drain: int = DRAIN_BATCH) -> KeepResult:
        """Drain up to ``drain`` items of the old list and trim; one round trip."""
        return self._run_keep([], drain)

    def maintain(self) -> KeepResult:
        """:meth:`keep` until the old list is empty (at start)."""
        result = self.keep()
        while result.legacy_left and result.drained:
            result = self.keep()
        return result

    # Reading -----------------------------------------------------------------------
    def size(self) -> int:
        return int(self.client.zcard(self.keys.by_time))

    def window(
        self, since: float | None = None, until: float | None = None
    ) -> list[tuple[str, float]]:
        """(id, failed_at) with ``since <= failed_at < until``, newest first."""
        high = f"({until!r}" if until is not None else "+inf"
        low = repr(since) if since is not None else "-inf"
        pairs: list[tuple[bytes, float]] = self.client.zrevrangebyscore(  # type: ignore[assignment]
            self.keys.by_time, high, low, withscores=True
        )
        return [(_text(member), float(score)) for member, score in pairs]

    def listed(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Listing items with ``since <= failed_at < until``, newest first.

        Read :data:`READ_BATCH` at a time by a script that returns each batch as one
        JSON text, so the client parses one reply per batch rather than one per record;
        each call holds Redis for about a millisecond.
        """
        high = f"({until!r}" if until is not None else "+inf"
        low = repr(since) if since is not None else "-inf"
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            text = self._summaries(
                keys=[self.keys.by_time, self.keys.summary], args=[high, low, offset, READ_BATCH]
            )
            batch = json.loads(text)
            found += [summary_from_data(record_id, data) for record_id, data in batch]
            if len(batch) < READ_BATCH:
                return found
            offset += READ_BATCH

    def summaries(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Listing items for ``ids``, None for an id that is gone."""
        found: list[dict[str, Any] | None] = []
        for batch in _batches(ids, READ_BATCH):
            for record_id, text in zip(
                batch, self.client.hmget(self.keys.summary, batch), strict=True
            ):
                found.append(None if text is None else summary_from_json(record_id, _text(text)))
        return found

    def records(self, ids: Sequence[str]) -> list[FailedRecord | None]:
        found: list[FailedRecord | None] = []
        for batch in _batches(ids, READ_BATCH):
            for record_id, text in zip(
                batch, self.client.hmget(self.keys.records, batch), strict=True
            ):
                found.append(None if text is None else FailedRecord.from_json(record_id, text))
        return found

    def get(self, record_id: str) -> FailedRecord | None:
        text = self.client.hget(self.keys.records, record_id)
        return None if text is None else FailedRecord.from_json(record_id, text)

    # Removing -----------------------------------------------------------------------
    def delete(self, ids: Iterable[str]) -> int:
        """Remove these records; how many existed."""
        removed = 0
        for batch in _batches(list(ids), READ_BATCH):
            removed += int(self._delete(keys=self.keys.set_keys, args=batch))
        return removed

    def requeue_script(self) -> Script:
        """``REQUEUE``, registered on this store's client (``telemetry.failed.requeue``)."""
        return self._requeue


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _batches(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
