"""The capped list on a real Redis."""

from __future__ import annotations

import pytest
import redis

from telemetry.deadletters.records import Reason, make_record
from telemetry.deadletters.store import DeadLetterStore


def record(n: int, size: int = 10) -> object:
    return make_record("default", Reason.NOT_JSON, None, f"id-{n}", "x" * size)


def test_the_record_cap_trims_the_oldest_and_logs_it(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = DeadLetterStore(redis_client, "t:dl", max_records=3, max_bytes=10**6)
    for n in range(5):
        store.push(record(n))  # type: ignore[arg-type]
    assert [r.id for _, r in store.records()] == ["id-4", "id-3", "id-2"]
    assert "trimmed 1 oldest record(s)" in caplog.text


def test_the_byte_cap_holds_and_the_size_key_stays_exact(redis_client: redis.Redis) -> None:
    store = DeadLetterStore(redis_client, "t:dl", max_records=100, max_bytes=2000)
    for n in range(20):
        store.push(record(n, size=300))  # type: ignore[arg-type]
    stored = redis_client.lrange("t:dl", 0, -1)
    assert sum(len(s) for s in stored) <= 2000
    assert int(redis_client.get("t:dl:bytes")) == sum(len(s) for s in stored)
    assert store.records(0, 1)[0][1].id == "id-19"


def test_a_record_larger_than_the_byte_cap_is_still_kept(redis_client: redis.Redis) -> None:
    store = DeadLetterStore(redis_client, "t:dl", max_records=10, max_bytes=100)
    store.push(record(1, size=500))  # type: ignore[arg-type]
    assert store.size() == 1


def test_remove_and_purge_keep_the_byte_count(redis_client: redis.Redis) -> None:
    store = DeadLetterStore(redis_client, "t:dl", max_records=10, max_bytes=10**6)
    for n in range(3):
        store.push(record(n))  # type: ignore[arg-type]
    newest = store.raw_at(0)
    assert newest is not None and store.remove(newest)
    assert not store.remove(newest)
    assert int(redis_client.get("t:dl:bytes")) == sum(
        len(s) for s in redis_client.lrange("t:dl", 0, -1)
    )
    assert store.purge() == 2 and not redis_client.exists("t:dl", "t:dl:bytes")
