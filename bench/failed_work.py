"""``python -m bench.failed_work --redis-url URL [--records N] [--output FILE]``: the failed-work figures.

In-process, against the given Redis (its database is flushed), no worker:

* ``write``: what a failing task's pool process spends on its record. Building it
  (the envelope encoded again from the request context, the record and its
  summary as JSON) in CPU microseconds, and the one EVALSHA that stores it, as
  the round trip's wall time and the script's own time in Redis
  (``INFO commandstats``);
* ``list``: ``GET /api/v1/failed?task=...&limit=100`` over ``--records`` exhausted
  records (ten tasks), through a real operator API server: the filter reads every
  summary, as ``count`` spans all pages;
* ``requeue``: every record requeued by one filter, in records per second.

Figures are medians; the machine's load is not controlled, so they are orders
of magnitude, not a benchmark session.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from telemetry.deadletters.policy import DEFAULT_POLICY
from telemetry.failed.capture import envelope_from_context
from telemetry.failed.operations import FailedWork, Selection
from telemetry.failed.query import Query
from telemetry.failed.records import EXHAUSTED_REASON, FailedRecord, Kind
from telemetry.failed.requeue import Requeuer
from telemetry.failed.store import Caps, FailedStore, StoreKeys
from telemetry.ops.access import AccessPolicy
from telemetry.ops.audit import AuditLog
from telemetry.ops.server import OpsServer

TASKS = 10
WRITES = 1000
LISTS = 7


def context_fields(n: int) -> dict[str, Any]:
    """A request context as a pool process holds it: headers, properties, 1 KiB of arguments."""
    task_id = str(uuid.uuid4())
    return {
        "lang": "py",
        "task": f"bench.task_{n % TASKS}",
        "id": task_id,
        "retries": 2,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "<2 args>",
        "kwargsrepr": "<1 kwargs>",
        "origin": "gen1@bench",
        "x-jobpilot-published-at": time.time(),
        "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "default", "routing_key": "default"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
        "delivery_info": {"exchange": "default", "routing_key": "default", "priority": 0},
        "args": ["x" * 900, n],
        "kwargs": {"attempt": n},
        "callbacks": None,
        "errbacks": None,
        "chain": None,
        "chord": None,
        "hostname": "w1@bench",
        "is_eager": False,
        "called_directly": False,
    }


def _traceback() -> str:
    try:
        raise ValueError("card declined by the payment provider")
    except ValueError as exc:
        return "".join(traceback.format_exception(exc)) * 8  # about 2 KiB, a deep stack


def build(n: int, text: str) -> FailedRecord:
    fields = context_fields(n)
    return FailedRecord.new(
        Kind.EXHAUSTED,
        queue="default",
        task=fields["task"],
        task_id=fields["id"],
        reason=EXHAUSTED_REASON,
        raw=envelope_from_context(fields),
        retries=2,
        exception="ValueError",
        message="card declined by the payment provider",
        traceback=text,
        trace_id=uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        hostname="w1@bench",
        arguments=(2, 1),
    )


def measure_write(store: FailedStore, client: redis.Redis) -> dict[str, Any]:
    text = _traceback()
    started = time.process_time()
    records = [build(n, text) for n in range(WRITES)]
    for record in records:
        record.to_json()
        record.summary_json()
    build_us = (time.process_time() - started) / WRITES * 1e6
    store.write(records[0])  # loads the script
    client.config_resetstat()
    walls = []
    for record in records[1:]:
        began = time.perf_counter()
        store.write(record)
        walls.append(time.perf_counter() - began)
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return {
        "record_bytes": len(records[0].to_json()) + len(records[0].summary_json()),
        "build_cpu_us": round(build_us, 1),
        "evalsha_wall_us_median": round(statistics.median(walls) * 1e6, 1),
        "evalsha_redis_us_per_call": stats.get("usec_per_call"),
    }


def fill(store: FailedStore, count: int) -> None:
    text = _traceback()
    batch: list[FailedRecord] = []
    for n in range(count):
        batch.append(build(n, text))
        if len(batch) == 200:
            store._run_keep(batch, 0)
            batch = []
    if batch:
        store._run_keep(batch, 0)


def measure_list(work: FailedWork, count: int) -> dict[str, Any]:
    server = OpsServer(
        "127.0.0.1",
        0,
        work,
        AccessPolicy(None, False, frozenset({"127.0.0.1"})),
        AuditLog(next(iter(work.stores.values())).client, "bench:audit"),
    )
    server.start()
    try:
        url = f"http://127.0.0.1:{server.address[1]}/api/v1/failed?task=bench.task_3&limit=100"
        walls, answer = [], {}
        for _ in range(LISTS):
            began = time.perf_counter()
            with urllib.request.urlopen(url, timeout=60) as response:
                answer = json.loads(response.read())
            walls.append(time.perf_counter() - began)
        began = time.perf_counter()
        work.groups(Query.parse({}).filter)
        groups = time.perf_counter() - began
    finally:
        server.stop()
    return {
        "records": count,
        "matched": answer["count"],
        "http_list_ms_median": round(statistics.median(walls) * 1e3, 1),
        "groups_ms": round(groups * 1e3, 1),
    }


def measure_requeue(work: FailedWork, count: int) -> dict[str, Any]:
    began = time.perf_counter()
    result = work.requeue(Selection(query=Query.parse({}, default_limit=None)), dry_run=False)
    seconds = time.perf_counter() - began
    return {
        "records": count,
        "requeued": result.done,
        "seconds": round(seconds, 2),
        "per_second": round(result.done / seconds),
    }


def measure(redis_url: str, records: int) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    app = Celery("bench-failed", broker=redis_url, set_as_current=False)
    store = FailedStore(client, StoreKeys.of("jobpilot:exhausted"), Caps(records * 2, 1 << 30))
    dead = FailedStore(client, StoreKeys.of("jobpilot:deadletter"), Caps(records, 1 << 30))
    work = FailedWork(
        {Kind.EXHAUSTED: store, Kind.DEAD_LETTER: dead}, Requeuer(app, None, DEFAULT_POLICY)
    )
    try:
        write = measure_write(store, client)
        client.flushdb()
        fill(store, records)
        listing = measure_list(work, records)
        requeue = measure_requeue(work, records)
    finally:
        client.flushdb()
        app.close()
    return {"write": write, "list": listing, "requeue": requeue}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.failed_work", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--redis-url", required=True, help="a Redis database this may flush")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    figures = measure(args.redis_url, args.records)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
