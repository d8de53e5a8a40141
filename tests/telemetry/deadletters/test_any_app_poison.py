"""Poison safety on another team's app, from ``telemetry.install(app)`` alone.

The inventory app (``tests.support.inventory``) has no base task of ours, no Request
of ours and no consumer of ours in its configuration. A real prefork worker of it
(concurrency 2) runs against the real Redis; raw items are pushed into its queue as
an attacker or a broken producer would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
import redis

from tests.conftest import redis_url
from tests.support.deadletters import records, size
from tests.support.inventory_worker import APP, WORKER, inventory_env
from tests.support.messages import deep_json, item, poison_items
from tests.support.scrape import samples_by_labels
from tests.support.tracing import run_as_producer
from tests.support.worker_process import ROOT, WorkerProcess, wait_until

pytestmark = pytest.mark.integration

QUEUE = "orders"
MSGPACK = "application/x-msgpack"

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def raw_item(task: str, body: object) -> str:
    """A well-formed task message on the orders queue, its body JSON."""
    return item(task=task, queue=QUEUE, body=json.dumps(body).encode())


def msgpack_item(task: str, body: bytes) -> str:
    """A task message on the orders queue as kombu sends msgpack: a binary body."""
    return item(task=task, queue=QUEUE, body=body, content_type=MSGPACK, content_encoding="binary")


def as_text(raw: str | bytes) -> str:
    """The item as the record keeps it: text, undecodable bytes as surrogate escapes."""
    return raw if isinstance(raw, str) else raw.decode("utf-8", "surrogateescape")


def kept(record: dict[str, object], pushed: str | bytes) -> bool:
    """The record keeps the pushed item: byte for byte when the channel refused it, and
    as the same JSON envelope when the worker refused the Message kombu built from it."""
    if record["raw"] == as_text(pushed):
        return True
    try:
        return json.loads(str(record["raw"])) == json.loads(pushed)
    except (RecursionError, ValueError):
        return False


def dead_lettered_by_reason(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for labels, value in samples["celery_messages_dead_lettered_total"].items()
        if dict(labels)["queue"] == QUEUE and value
    }


def finished(samples: Samples, task: str, outcome: str) -> float:
    key = (("outcome", outcome), ("queue", QUEUE), ("task", task))
    return samples["celery_task_finished_total"].get(key, 0.0)


def start_inventory(
    start_worker: Callable[..., WorkerProcess], **env: str
) -> tuple[WorkerProcess, dict[str, str]]:
    full = {**inventory_env(None), **env}
    return start_worker(full, command=[*WORKER, "-Q", QUEUE, "--loglevel", "INFO"]), full


def test_every_poison_kind_on_another_apps_queue_is_dead_lettered_kept_and_counted(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    # Given the inventory app's worker, which accepts JSON only
    worker, _ = start_inventory(start_worker)
    # When one item of every poison kind the jobpilot tests use is pushed raw into its queue,
    poison: dict[str, str | bytes] = {
        **poison_items("order_ship", QUEUE, too_few_args=b"[[], {}, {}]"),
        "bad_envelope (deep)": deep_json(100_000),
        # a valid msgpack task, on an app that does not accept msgpack
        "content_type (msgpack)": msgpack_item("order_ship", msgpack.packb([[1], {}, None])),
        # bind=True: the signature Celery checks leaves `self` out
        "bad_arguments (bound)": raw_item("order_audit", [[1], {"lenient": True}, {}]),
    }
    # with tasks that must still run: a bound task's good call, and a typing=False task
    # called badly, which Celery does not check and which fails in its body instead
    bound_ok = raw_item("order_audit", [[1], {"strict": True}, {}])
    unchecked = raw_item("order_note", [[], {}, {}])
    for raw in [*poison.values(), bound_ok, unchecked]:
        redis_client.lpush(QUEUE, raw)
    # and then a valid task
    redis_client.lpush(QUEUE, raw_item("order_ship", [[7], {}, {}]))

    # Then the worker serves the valid task after them
    def served() -> Samples | None:
        samples = samples_by_labels(worker.metrics_url)
        return samples if finished(samples, "order_ship", "succeeded") == 1 else None

    wait_until(served, 30, message="the valid order after the poison")
    # And each poison item is in the dead-letter list, kept as it was pushed
    found = wait_until(
        lambda: len(records(redis_client)) >= len(poison) and records(redis_client), 15
    )
    assert len(found) == len(poison)
    for name, raw in poison.items():
        reason = name.split(" ")[0]
        matches = [r for r in found if r["reason"] == reason and kept(r, raw)]
        assert len(matches) == 1, f"{name}: {[(r['reason'], r['raw'][:80]) for r in found]}"
        assert matches[0]["queue"] == QUEUE
    # And the dead-letter metrics count them, by reason, and the list's length; every one
    # ended as `rejected`
    samples = wait_until(
        lambda: (
            (s := samples_by_labels(worker.metrics_url))
            and sum(dead_lettered_by_reason(s).values()) == len(poison)
            and s["celery_deadletter_size"].get(()) == len(poison)
            and s
        ),
        10,
        message="every dead letter counted, and the list's length polled",
    )
    assert dead_lettered_by_reason(samples) == Counter(name.split(" ")[0] for name in poison)
    rejected = sum(
        value
        for labels, value in samples["celery_task_finished_total"].items()
        if ("outcome", "rejected") in labels
    )
    assert rejected == len(poison)
    # And arguments that do not bind never reached a pool process; the others ran
    started = samples["celery_task_started_total"]
    assert started[(("queue", QUEUE), ("task", "order_ship"))] == 1
    assert started[(("queue", QUEUE), ("task", "order_audit"))] == 1
    assert finished(samples, "order_audit", "succeeded") == 1
    assert finished(samples, "order_note", "failed") == 1
    # And the worker lives, logging one line per dead letter and no body
    log = worker.log()
    assert log.count("dead-lettered message from") == len(poison)
    assert "definitely not json" not in log
    assert worker.process is not None and worker.process.poll() is None
    # And the dead-letter CLI lists them for this app
    listing = subprocess.run(
        [
            *(sys.executable, "-m", "telemetry.failed", "-A", APP, "list"),
            *("--kind", "dead_letter", "--limit", "50"),
        ],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "INVENTORY_BROKER_URL": redis_url()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0] == f"{len(poison)} record(s) match"
    assert sorted(line.split()[4] for line in lines[1:]) == sorted(r["reason"] for r in found)


def test_an_app_that_accepts_msgpack_runs_its_msgpack_tasks(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    # Given the inventory app accepting msgpack too, with a consumer class of its own
    worker, env = start_inventory(
        start_worker,
        INVENTORY_ACCEPT="json,msgpack",
        INVENTORY_CONSUMER=f"{APP}:AuditedConsumer",
    )
    # When its producer sends msgpack tasks and a JSON one
    ids = run_as_producer(
        env,
        f"from {APP} import app\n"
        "ids = [app.send_task('order_ship', args=[n], serializer='msgpack').id for n in range(3)]\n"
        "ids.append(app.send_task('order_ship', args=[3]).id)\n"
        "print(' '.join(ids))\n",
    ).split()
    # and msgpack poison is pushed raw beside them
    poison = {
        "bad_body": msgpack_item("order_ship", b"\xc1"),  # 0xc1 is never valid msgpack
        "bad_body (shape)": msgpack_item("order_ship", msgpack.packb([1, 2])),
        "bad_arguments": msgpack_item("order_ship", msgpack.packb([[], {}, None])),
        "content_type": item(
            task="order_ship", queue=QUEUE, body=b"[[1], {}, {}]", content_type="application/x-yaml"
        ),
    }
    for raw in poison.values():
        redis_client.lpush(QUEUE, raw)

    # Then every task it sent runs, and none is dead-lettered
    def done() -> Samples | None:
        samples = samples_by_labels(worker.metrics_url)
        return samples if finished(samples, "order_ship", "succeeded") == len(ids) else None

    samples = wait_until(done, 30, message="the msgpack and JSON orders")
    found = wait_until(
        lambda: len(records(redis_client)) >= len(poison) and records(redis_client), 15
    )
    assert not {r["task_id"] for r in found} & set(ids)
    # And the msgpack poison is dead-lettered, kept, each for its reason
    assert sorted(r["reason"] for r in found) == sorted(n.split(" ")[0] for n in poison)
    for name, raw in poison.items():
        assert any(r["reason"] == name.split(" ")[0] and kept(r, raw) for r in found), name
    assert finished(samples, "order_ship", "failed") == 0
    # And the app's own consumer ran, combined with ours
    assert "inventory consumer connected" in worker.log()
    assert size(redis_client) == len(poison)


def test_poison_safety_stays_on_with_the_telemetry_off(
    start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    """TELEMETRY_ENABLED=false turns the observability off; dead letters are not telemetry."""
    worker, _ = start_inventory(start_worker, TELEMETRY_ENABLED="false")
    redis_client.lpush(QUEUE, b"\x80 not json", raw_item("order_ship", [[5], {}, {}]))
    worker.wait_for_log("] succeeded in", 15)
    assert [(r["reason"], r["raw"]) for r in records(redis_client)] == [
        ("not_json", as_text(b"\x80 not json"))
    ]


def test_a_worker_consumer_that_cannot_be_combined_is_one_line_and_a_non_zero_exit(
    log_dir: Path,
) -> None:
    # Given the inventory app configured with a worker_consumer that is not Celery's
    env = {**inventory_env(None), "INVENTORY_CONSUMER": f"{APP}:NotAConsumer"}
    worker = WorkerProcess(env, log_dir, command=[*WORKER, "-Q", QUEUE])
    try:
        # When its worker starts
        code = worker.start(wait=False).wait_exit(60)
        # Then it exits non-zero with one settings line saying why, and no traceback
        log = worker.log()
        assert code != 0
        assert [line for line in log.splitlines() if line.startswith("settings:")] == [
            f"settings: worker_consumer: {APP}:NotAConsumer is not a subclass of "
            "celery.worker.consumer.Consumer, which poison safety extends; derive it from "
            "that class, or install the telemetry with poison_safety=False"
        ]
        assert "Traceback" not in log
    finally:
        worker.stop(timeout=10)
