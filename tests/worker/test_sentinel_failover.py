"""A worker on a ``sentinel://`` list keeps every guarantee through a real failover.

A master, its replica and three sentinels (down-after 1000 ms, failover-timeout
5000 ms); a prefork worker (concurrency 2) and a plain producer both find the
master through the sentinels. The master is killed while tasks stream in.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from celery import Celery

from bench.sentinel import MASTER_NAME, SentinelGroup
from tests.support.database import schema_command
from tests.support.deadletters import records, size
from tests.support.endpoints import readyz
from tests.support.messages import poison_items
from tests.support.scrape import sample_sum, scrape
from tests.support.worker_process import SHORT_VISIBILITY, WorkerProcess, wait_until

pytestmark = pytest.mark.integration

PROBE_INTERVAL = 5.0
#: The stream publishes one task every this many seconds.
STREAM_PERIOD = 0.02


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    started = SentinelGroup(workdir).start()
    yield started
    started.stop()


def recorded(database: Path) -> set[str]:
    """The keys of the tasks that ran (``tests.sleep_then_record`` rows)."""
    if not database.exists():
        return set()
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            return {row[0] for row in connection.execute("SELECT key FROM example_records")}
    except sqlite3.OperationalError:  # the table is not there yet
        return set()


@dataclass
class Stream:
    """Publishes ``stream-<n>`` tasks until stopped; remembers when each publish returned."""

    producer: Celery
    published: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def published_after(self, moment: float) -> set[str]:
        return {key for key, at in dict(self.published).items() if at > moment}

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            key = f"stream-{n}"
            try:
                self.producer.send_task(
                    "tests.sleep_then_record", args=[key, 0], queue="default", retry=False
                )
                self.published[key] = time.monotonic()
            except Exception:  # the producer is told: not a loss
                self.failed.append(key)
            n += 1
            self.stop.wait(STREAM_PERIOD)


def ready(worker: WorkerProcess) -> bool:
    status, _ = readyz(worker)
    return status == 200


def foreign_clients(client: redis.Redis) -> list[str]:
    """Clients of a server other than sentinels, replication links and this observer."""
    return [
        entry["addr"]
        for entry in client.client_list()
        if not entry.get("name", "").startswith(("sentinel-", "observer"))
        and "M" not in entry["flags"]
        and "S" not in entry["flags"]
    ]


def test_a_worker_follows_a_sentinel_failover_and_keeps_its_guarantees(
    group: SentinelGroup,
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
) -> None:
    # Given a worker (default, agents, briefings; scraping left unconsumed) on the sentinel list
    database = Path(worker_env["DATABASE_URL"].removeprefix("sqlite+aiosqlite:///"))
    env = {
        **worker_env,
        **SHORT_VISIBILITY,
        "REDIS_URL": group.urls,
        "BROKER_SENTINEL_MASTER": MASTER_NAME,
        "READINESS_INTERVAL": str(PROBE_INTERVAL),
        "QUEUE_POLL_INTERVAL": "1",
    }
    assert schema_command(worker_env["DATABASE_URL"]).returncode == 0
    worker = start_worker(env, queues="default,agents,briefings")
    wait_until(lambda: ready(worker), 30, 0.1, "/readyz 200 before the failover")
    assert readyz(worker)[1]["checks"]["broker"]["reached"] == f"127.0.0.1:{group.master.port}"
    producer = group.producer()
    for n in range(4):
        producer.send_task("tests.sleep_then_record", args=[f"before-{n}", 0], queue="default")
    wait_until(lambda: len(recorded(database)) == 4, 20, 0.1, "the tasks before the failover")

    # When tasks stream in and the master is killed mid-stream
    stream = Stream(group.producer())
    publisher = threading.Thread(target=stream.run, daemon=True)
    publisher.start()
    time.sleep(1.5)  # a second and a half of stream before the kill
    group.master.kill()
    killed_at = time.monotonic()

    # Then Sentinel promotes the replica; a task published after the kill runs; and /readyz
    # is 200 within two probe intervals of the promotion, every check run on the new master
    promoted_at = wait_until(
        lambda: group.promoted() and time.monotonic(),
        30,
        0.05,
        "the promotion",
    )
    promoted_wall = time.time()
    new_address = f"127.0.0.1:{group.replica.port}"

    first_run: list[float] = []

    def note_first_run() -> bool:
        if not first_run and stream.published_after(killed_at) & recorded(database):
            first_run.append(time.monotonic())
        return bool(first_run)

    def ready_on_the_new_master() -> bool:
        note_first_run()
        status, report = readyz(worker)
        checks = report["checks"].values()
        return (
            status == 200
            and report["checks"]["broker"]["reached"] == new_address
            and all(check["checked_at"] >= promoted_wall for check in checks)
        )

    ready_at = wait_until(
        lambda: ready_on_the_new_master() and time.monotonic(),
        2 * PROBE_INTERVAL,
        0.05,
        "/readyz 200 on the new master",
    )
    wait_until(note_first_run, 30, 0.05, "a task published after the kill to run")
    wait_until(lambda: len(stream.published_after(ready_at)) >= 20, 10, 0.05, "more publishes")
    stream.stop.set()
    publisher.join(10)

    # And every publish the new master acknowledged runs; only the replication window may lose
    published = dict(stream.published)
    wait_until(
        lambda: stream.published_after(killed_at) <= recorded(database),
        60,
        0.1,
        "every task published after the kill to run",
    )
    window = {k for k, t in published.items() if killed_at - 1.0 <= t <= killed_at}
    # Tasks the worker held at the kill come back once their visibility timeout passes.
    deadline = time.monotonic() + int(SHORT_VISIBILITY["BROKER_VISIBILITY_TIMEOUT"]) + 6
    while set(published) - recorded(database) and time.monotonic() < deadline:
        time.sleep(0.2)
    lost = set(published) - recorded(database)
    assert lost <= window, sorted(lost - window)
    print(
        f"failover: kill->promotion {promoted_at - killed_at:.2f}s, "
        f"kill->first task {first_run[0] - killed_at:.2f}s, "
        f"promotion->/readyz 200 {ready_at - promoted_at:.2f}s, "
        f"published {len(published)} ({len(window)} in the last second), lost {len(lost)}, "
        f"refused {len(stream.failed)}"
    )

    # And malformed items pushed into the new master are dead-lettered there, the worker serving
    new_master = redis.Redis(port=group.replica.port)
    poison = poison_items()
    for raw in poison.values():
        new_master.lpush("default", raw)
    found = wait_until(
        lambda: len(records(new_master)) >= len(poison) and records(new_master), 30, 0.1
    )
    assert {r["reason"] for r in found} == set(poison)
    assert size(new_master) == len(poison)
    producer.send_task("tests.sleep_then_record", args=["after-poison", 0], queue="default")
    wait_until(lambda: "after-poison" in recorded(database), 20, 0.1, "a task after the poison")
    assert worker.process is not None and worker.process.poll() is None

    # And the depth poller reads the new master: three tasks wait in the unconsumed queue
    for n in range(3):
        producer.send_task("scrape_page", args=[f"https://example.com/{n}"], queue="scraping")
    wait_until(
        lambda: sample_sum(scrape(worker.metrics_url), "celery_queue_depth", queue="scraping") == 3,
        15,
        0.2,
        "celery_queue_depth{queue=scraping} == 3",
    )

    # When the killed master comes back, it rejoins as a replica and no client of ours uses it
    group.master.start()
    observer = redis.Redis(port=group.master.port, client_name="observer", socket_timeout=1)
    seen: list[str] = []
    deadline = time.monotonic() + PROBE_INTERVAL + 2
    while time.monotonic() < deadline or observer.info("replication")["role"] != "slave":
        seen += foreign_clients(observer)
        assert time.monotonic() < deadline + 30, "the old master never rejoined as a replica"
        time.sleep(0.05)
    assert seen == []
    assert group.promoted()
    assert ready(worker)
