"""Listing, paging, grouping and acting on a real Redis, through the functions the API and CLI share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from telemetry.deadletters.policy import DEFAULT_POLICY
from telemetry.failed.operations import FailedWork, Selection
from telemetry.failed.query import BadInput, Query, encode_cursor, parse_time
from telemetry.failed.records import EXHAUSTED_REASON, FailedRecord, Kind
from telemetry.failed.requeue import Requeuer
from telemetry.failed.store import Caps, FailedStore, StoreKeys
from tests.conftest import redis_url
from tests.support.messages import item

T0 = 1_800_000_000.0


@pytest.fixture
def work(redis_client: redis.Redis) -> Iterator[tuple[FailedWork, dict[str, FailedStore]]]:
    app = Celery("operations-test", broker=redis_url(), set_as_current=False)
    stores = {
        Kind.EXHAUSTED: FailedStore(redis_client, StoreKeys.of("t:exhausted"), Caps(10**4, 10**8)),
        Kind.DEAD_LETTER: FailedStore(
            redis_client, StoreKeys.of("t:deadletter"), Caps(10**4, 10**8)
        ),
    }
    yield FailedWork(stores, Requeuer(app, None, DEFAULT_POLICY)), stores
    app.close()


def add(store: FailedStore, kind: Kind, n: int, **fields: object) -> FailedRecord:
    defaults: dict[str, object] = {
        "queue": "default",
        "task": "send_invoice",
        "task_id": f"task-{n}",
        "reason": EXHAUSTED_REASON if kind == Kind.EXHAUSTED else "unknown_task",
        "raw": item(task="send_invoice", task_id=f"task-{n}"),
        "failed_at": T0 + n,
        "exception": "ValueError" if kind == Kind.EXHAUSTED else None,
        "message": f"failure {n}",
    }
    record = FailedRecord.new(kind, **{**defaults, **fields})
    store.write(record)
    return record


def test_pages_are_newest_first_across_kinds_with_an_exact_count(
    work: tuple[FailedWork, dict[str, FailedStore]],
) -> None:
    failed, stores = work
    written = [
        add(
            stores[Kind.EXHAUSTED if n % 2 else Kind.DEAD_LETTER],
            Kind.EXHAUSTED if n % 2 else Kind.DEAD_LETTER,
            n,
        )
        for n in range(7)
    ]
    # Two records at the same instant are ordered by id
    tied = [
        add(stores[Kind.EXHAUSTED], Kind.EXHAUSTED, 100 + n, failed_at=T0 + 50) for n in range(2)
    ]
    expected = sorted(tied, key=lambda r: r.id, reverse=True) + list(reversed(written))
    seen: list[str] = []
    query = Query.parse({"limit": "3"})
    while True:
        page = failed.listing(query)
        assert page["count"] == 9
        seen += [entry["id"] for entry in page["items"]]
        if page["next"] is None:
            break
        query = Query.parse({"limit": "3", "cursor": page["next"]})
    assert seen == [r.id for r in expected]
    first = failed.listing(Query.parse({"limit": "1"}))["items"][0]
    assert set(first) == {
        "id",
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
    }
    assert first["failed_at"] == "2027-01-15T08:00:50.000000Z" and first["trace_id"] is None


def test_filters_match_exactly_and_q_never_reads_arguments(
    work: tuple[FailedWork, dict[str, FailedStore]],
) -> None:
    failed, stores = work
    exhausted = stores[Kind.EXHAUSTED]
    add(exhausted, Kind.EXHAUSTED, 1, task="send_invoice", message="card declined")
    add(exhausted, Kind.EXHAUSTED, 2, task="ship_order", exception="TimeoutError", message="slow")
    add(
        exhausted,
        Kind.EXHAUSTED,
        3,
        queue="billing",
        raw=item(task="t", body=b'[["needle"], {}, {}]'),
    )
    add(stores[Kind.DEAD_LETTER], Kind.DEAD_LETTER, 4)

    def count(**given: str) -> int:
        return int(failed.listing(Query.parse(given))["count"])

    assert count(kind="dead_letter") == 1 and count(kind="exhausted") == 3
    assert count(task="ship_order") == 1 and count(exception="TimeoutError") == 1
    assert count(queue="billing") == 1 and count(reason="unknown_task") == 1
    assert count(q="DECLINED") == 1 and count(q="timeout") == 1 and count(q="ship") == 1
    assert count(q="needle") == 0  # the argument is in the body only
    since = "2027-01-15T08:00:02Z"
    assert count(since=since) == 3 and count(until=since) == 1
    groups = failed.groups(Query.parse({"kind": "exhausted"}).filter)
    assert groups["count"] == 3
    # Newest group first, each with its newest time
    assert [(g["queue"], g["task"], g["exception"], g["count"]) for g in groups["groups"]] == [
        ("billing", "send_invoice", "ValueError", 1),
        ("default", "ship_order", "TimeoutError", 1),
        ("default", "send_invoice", "ValueError", 1),
    ]
    by_key = {(g["queue"], g["task"], g["exception"]): g for g in groups["groups"]}
    assert by_key[("default", "send_invoice", "ValueError")]["count"] == 1
    assert (
        by_key[("billing", "send_invoice", "ValueError")]["newest"] == "2027-01-15T08:00:03.000000Z"
    )


def test_a_dry_run_matches_what_the_real_run_acts_on(
    work: tuple[FailedWork, dict[str, FailedStore]], redis_client: redis.Redis
) -> None:
    failed, stores = work
    for n in range(5):
        add(stores[Kind.EXHAUSTED], Kind.EXHAUSTED, n)
    grouped = add(
        stores[Kind.EXHAUSTED], Kind.EXHAUSTED, 9, raw=item(task="send_invoice", group="g")
    )
    selection = Selection(query=Query.parse({"task": "send_invoice"}, default_limit=None))
    dry = failed.requeue(selection, dry_run=True)
    real = failed.requeue(selection, dry_run=False)
    assert dry.as_json() == {"matched": 6, "requeued": 0, "skipped": {"in_canvas": 1}}
    assert real.as_json() == {"matched": 6, "requeued": 5, "skipped": {"in_canvas": 1}}
    assert redis_client.llen("default") == 5 and stores[Kind.EXHAUSTED].size() == 1
    by_ids = Selection(ids=(grouped.id, "no-such-id"))
    assert failed.delete(by_ids, dry_run=True).as_json() == {
        "matched": 2,
        "deleted": 0,
        "skipped": {"not_found": 1},
    }
    assert failed.delete(by_ids, dry_run=False).as_json() == {
        "matched": 2,
        "deleted": 1,
        "skipped": {"not_found": 1},
    }


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ({"colour": "red"}, "colour"),
        ({"kind": "lost"}, "kind"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"since": "2026-12-07"}, "since"),
        ({"since": "2026-12-07T10:00:00"}, "since"),
        ({"until": "soon"}, "until"),
        ({"since": "2026-12-08T00:00:00Z", "until": "2026-12-07T00:00:00Z"}, "until"),
        ({"cursor": "!!"}, "cursor"),
        ({"cursor": encode_cursor(1.0, "x")[:-2]}, "cursor"),
        ({"task": ""}, "task"),
        ({"q": "x" * 2000}, "q"),
    ],
)
def test_bad_input_names_the_key(given: dict[str, str], key: str) -> None:
    with pytest.raises(BadInput) as caught:
        Query.parse(given)
    assert caught.value.key == key


def test_rfc3339_offsets_are_honoured() -> None:
    assert parse_time("since", "2026-12-07T10:00:00Z") == parse_time(
        "since", "2026-12-07T11:00:00+01:00"
    )
