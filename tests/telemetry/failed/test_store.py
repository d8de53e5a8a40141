"""The failed-work store on a real Redis: caps, age, the old list's drain, exact byte counts."""

from __future__ import annotations

import json
import time

import pytest
import redis

from telemetry.failed.records import EXHAUSTED_REASON, FailedRecord, Kind
from telemetry.failed.store import Caps, FailedStore, StoreKeys

BASE = "t:exhausted"


def record(n: int, *, size: int = 10, failed_at: float | None = None) -> FailedRecord:
    return FailedRecord.new(
        Kind.EXHAUSTED,
        queue="default",
        task="t",
        task_id=f"task-{n}",
        reason=EXHAUSTED_REASON,
        raw="x" * size,
        failed_at=failed_at if failed_at is not None else 1_000_000 + n,
    )


def stored_bytes(client: redis.Redis, keys: StoreKeys) -> int:
    records = client.hgetall(keys.records)
    summaries = client.hgetall(keys.summary)
    return sum(len(v) for v in records.values()) + sum(len(v) for v in summaries.values())


def assert_consistent(client: redis.Redis, keys: StoreKeys) -> None:
    ids = {m.decode() for m in client.zrange(keys.by_time, 0, -1)}
    assert ids == {k.decode() for k in client.hkeys(keys.records)}
    assert ids == {k.decode() for k in client.hkeys(keys.summary)}
    assert int(client.get(keys.stored_bytes) or 0) == stored_bytes(client, keys)


def test_the_record_cap_keeps_the_newest_and_logs_the_trim(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = FailedStore(redis_client, StoreKeys.of(BASE), Caps(3, 10**6))
    written = [record(n) for n in range(5)]
    for item in written:
        store.write(item)
    assert [i for i, _ in store.window()] == [r.id for r in reversed(written[2:])]
    assert "trimmed 1 record(s) past the caps" in caplog.text
    assert_consistent(redis_client, store.keys)


def test_the_byte_cap_holds_and_a_lone_large_record_is_kept(redis_client: redis.Redis) -> None:
    store = FailedStore(redis_client, StoreKeys.of(BASE), Caps(100, 3000))
    for n in range(20):
        store.write(record(n, size=300))
    assert 0 < stored_bytes(redis_client, store.keys) <= 3000
    assert_consistent(redis_client, store.keys)
    big = FailedStore(redis_client, StoreKeys.of("t:big"), Caps(10, 100))
    only = record(1, size=500)
    big.write(only)
    assert big.size() == 1 and big.get(only.id) == only


def test_age_is_trimmed_on_every_write_and_every_keep(redis_client: redis.Redis) -> None:
    # Given records past a 60 s limit, written by a process that kept none
    unlimited = FailedStore(redis_client, StoreKeys.of(BASE), Caps(100, 10**6))
    store = FailedStore(redis_client, StoreKeys.of(BASE), Caps(100, 10**6, max_age=60))
    now = time.time()
    old, older, fresh = (record(n, failed_at=now - age) for n, age in ((1, 61), (2, 3600), (3, 30)))
    unlimited.write(old)
    # When a record is written with the limit, the old one goes in the same script
    assert store.write(fresh).trimmed_by_age == 1
    assert [i for i, _ in store.window()] == [fresh.id]
    # And a size poll trims what others wrote meanwhile
    unlimited.write(older)
    kept = store.keep()
    assert kept.trimmed_by_age == 1 and [i for i, _ in store.window()] == [fresh.id]
    assert_consistent(redis_client, store.keys)


def test_the_old_list_is_drained_with_ids_times_and_fields_kept(redis_client: redis.Redis) -> None:
    # Given records an old worker pushed: its JSON, newest at the head, with its byte counter
    base = "t:deadletter"
    old = [
        {
            "queue": "default",
            "reason": "not_json",
            "task": None,
            "id": None,
            "received_at": 100.5,
            "raw": "x",
        },
        {
            "queue": "agents",
            "reason": "unknown_task",
            "task": "nope",
            "id": "t-2",
            "received_at": 200.25,
            "raw": "{}",
        },
    ]
    for item in old:
        text = json.dumps(item)
        redis_client.lpush(base, text)
        redis_client.incrby(f"{base}:bytes", len(text))
    redis_client.lpush(base, "not json at all")  # an item no record should be lost for
    store = FailedStore(redis_client, StoreKeys.of(base), Caps(100, 10**6))
    # When the set is kept (a start, a size poll) with room for one item per call
    first = store.keep(drain=1)
    assert (first.drained, first.legacy_left) == (1, 2)
    store.maintain()
    # Then every item is in the set, oldest first by failed_at, and the list is gone
    assert not redis_client.exists(base, f"{base}:bytes")
    window = store.window()
    assert len(window) == 3
    records = {r.task_id: r for r in store.records([i for i, _ in window]) if r is not None}
    assert records["t-2"].failed_at == 200.25 and records["t-2"].reason == "unknown_task"
    assert records["t-2"].task == "nope" and records["t-2"].queue == "agents"
    assert records["t-2"].kind == Kind.DEAD_LETTER and records["t-2"].raw == "{}"
    summaries = {s["task_id"]: s for s in store.summaries([i for i, _ in window]) if s}
    assert (
        summaries["t-2"]["reason"] == "unknown_task" and summaries["t-2"]["kind"] == "dead_letter"
    )
    unreadable = [
        r for r in store.records([i for i, _ in window]) if r and r.raw == "not json at all"
    ]
    assert len(unreadable) == 1
    assert_consistent(redis_client, store.keys)


def test_delete_and_window_bounds(redis_client: redis.Redis) -> None:
    store = FailedStore(redis_client, StoreKeys.of(BASE), Caps(100, 10**6))
    written = [record(n, failed_at=float(n)) for n in range(1, 6)]
    for item in written:
        store.write(item)
    assert [i for i, _ in store.window(since=2, until=4)] == [written[2].id, written[1].id]
    assert store.delete([written[0].id, written[0].id, "missing"]) == 1
    assert store.size() == 4
    assert_consistent(redis_client, store.keys)
    assert store.delete([r.id for r in written]) == 4
    assert not redis_client.exists(*store.keys.set_keys)
