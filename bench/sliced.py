"""Drain sessions whose variants take turns in slices, each worker frozen between its turns.

One round: every variant gets a fresh prefork worker (concurrency 2, our
settings), all started together, each on a database of its own on a private
redis-server (:mod:`bench.redis_server`). Once all have logged "ready" and
their start-up work has settled (:func:`bench.drain.settle`), each is
frozen (SIGSTOP to its process group: main, pool and export processes). Then
every variant drains the same N messages, ``slice_size`` at a time. For each
slice, in a shuffled order of variants: the slice's messages are restored under
a staging key and renamed into the queue, the worker is thawed (SIGCONT), the
clock runs until the queue and kombu's ``unacked`` hash are both empty, and the
worker is frozen again. A variant's rate is N over the sum of its slices.

Why slices: this VM's CPUs switch between two speeds, about 1.7x apart, over
fractions of a second to seconds, so consecutive 10,000-task drains catch
different shares of slow time. Taking turns every half second makes both sides
of a ratio sample the same stretches. Measured side by side on 2026-11-30,
off against off: drains one after the other spread 0.163 (standard deviation of
the per-round ratio, 8 rounds); slices of 500 spread 0.020.

Why freezing: what a worker does on wall-clock timers (span export batches,
depth polls, readiness probes) would otherwise run during another variant's
slice and be charged to it. Frozen, the worker catches up when it is thawed, in
its own time. Timers fire as often per wall second as in a plain drain, so per
second of a worker's own running they fire more often: a cost the session
charges to the variant that has the timers.

Why shifting heaps: a worker's throughput depends by a few percent on where
its objects land, so two configurations that differ in anything at all also
differ in that luck, and an A/A pair (the same configuration twice) cannot
see it. Each worker of each round therefore starts with its heap shifted by a
random amount (``bench.tasks.shift_heap``, seeded from the session's
generator), and every variant samples many layouts.

A slice ends on a keyspace notification: kombu deletes ``unacked`` when its
last entry is acknowledged, and the harness, blocked on the notification, then
checks the queue and the hash in one round trip, and again a millisecond
later, because a message between BRPOP and its ``unacked`` entry is in
neither. The clock stops at the first check that found both empty.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.drain import (
    DRAIN_TIMEOUT_SECONDS,
    QUEUE,
    ROOT,
    STAGING,
    Run,
    Variant,
    role_cpu_seconds,
    settle,
)
from bench.hammer import Hammer
from bench.redis_server import DATABASES, PrivateRedis, free_port
from bench.tasks import HEAP_SHIFT_VARIABLE
from worker.command import worker_command

#: About half a second of a no-op drain: the turn length of the interleaving.
SLICE_SIZE = 500
#: A drained queue is confirmed this much later (a message can be between
#: BRPOP and its unacked entry).
CONFIRM_SECONDS = 0.001
#: How long the harness waits for a notification before checking anyway.
NOTIFICATION_TIMEOUT_SECONDS = 0.25
READY_TIMEOUT_SECONDS = 90.0
UNACKED = "unacked"


def slice_sizes(n: int, size: int) -> list[int]:
    """``n`` split into turns of ``size`` (the last one shorter if it does not divide)."""
    sizes = [size] * (n // size)
    return [*sizes, n % size] if n % size else sizes


@dataclass
class Worker:
    variant: Variant
    db: int
    process: subprocess.Popen[bytes]
    log: Path
    metrics_url: str
    seconds: float = 0.0
    scrapes: int = 0
    scrape_failures: int = 0

    def freeze(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.variant.name} exited: {self.log.read_text()[-2000:]}")
        return " ready." in self.log.read_text(errors="replace")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.thaw()
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class SlicedSession:
    """Rounds of one task, every variant draining ``n`` messages in turns."""

    def __init__(
        self,
        server: PrivateRedis,
        variants: Sequence[Variant],
        task: str,
        n: int,
        workdir: Path,
        slice_size: int = SLICE_SIZE,
    ) -> None:
        if len(variants) >= DATABASES:
            raise ValueError(f"at most {DATABASES - 1} variants")
        self.server = server
        self.variants = variants
        self.task = task
        self.workdir = workdir
        self.sizes = slice_sizes(n, slice_size)
        self.slices = self._stage(n)
        self._events = server.client().pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2
        self._events.subscribe(
            *(f"__keyspace@{db}__:{UNACKED}" for db in range(1, len(variants) + 1))
        )

    def _stage(self, n: int) -> list[bytes]:
        """Publish ``n`` messages once; keep each slice's messages as a DUMP, oldest first."""
        client = self.server.client()
        client.flushall()
        env = {**os.environ, "REDIS_URL": self.server.url(), "TELEMETRY_ENABLED": "false"}
        code = (
            "from worker.celery_app import app\n"
            "with app.producer_or_acquire() as producer:\n"
            f"    for _ in range({n}): app.send_task({self.task!r}, producer=producer)\n"
        )
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
        # kombu pushes on the left and BRPOP takes from the right: the oldest are last.
        items = list(reversed(client.lrange(QUEUE, 0, -1)))
        dumps, start = [], 0
        for size in self.sizes:
            chunk = items[start : start + size]
            start += size
            client.delete(STAGING)
            client.lpush(STAGING, *chunk)
            dump = client.dump(STAGING)
            assert dump is not None
            dumps.append(dump)
        client.flushall()
        return dumps

    def round(self, rng: random.Random) -> dict[str, Run]:
        """Fresh workers for every variant, each draining all slices in shuffled turns."""
        workers = [
            self._start(variant, db, str(rng.random()))
            for db, variant in enumerate(self.variants, 1)
        ]
        try:
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while not all(worker.ready() for worker in workers):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not become ready")
                time.sleep(0.05)
            settle([worker.process.pid for worker in workers])
            for worker in workers:
                worker.freeze()
            cpu_before = {w.variant.name: role_cpu_seconds(w.process.pid) for w in workers}
            for turn, dump in enumerate(self.slices):
                order = list(workers)
                rng.shuffle(order)
                for worker in order:
                    self._drain_slice(worker, dump, self.sizes[turn])
            runs = {}
            for w in workers:
                self._check_succeeded(w)
                after, before = role_cpu_seconds(w.process.pid), cpu_before[w.variant.name]
                by_role = {role: after[role] - before[role] for role in after}
                runs[w.variant.name] = Run(
                    w.variant.name,
                    self.task,
                    sum(self.sizes),
                    w.seconds,
                    sum(by_role.values()),
                    w.scrapes,
                    w.scrape_failures,
                    by_role,
                )
            return runs
        finally:
            for worker in workers:
                worker.stop()

    def _check_succeeded(self, worker: Worker) -> None:
        """Every task of the round succeeded: a worker whose tasks fail (unregistered,
        raising) drains fast, and its rate means nothing."""
        marker = f" {self.task}["
        lines = worker.log.read_text(errors="replace").splitlines()
        succeeded = sum(1 for line in lines if marker in line and " succeeded in " in line)
        if succeeded != sum(self.sizes):
            raise RuntimeError(
                f"{worker.variant.name}: {succeeded} of {sum(self.sizes)} tasks succeeded "
                f"(see {worker.log})"
            )

    def _start(self, variant: Variant, db: int, heap_shift: str) -> Worker:
        self.server.client(db).flushdb()
        log = self.workdir / f"{variant.name}.log"
        port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": self.server.url(db),
            "LOG_LEVEL": "INFO",
            "METRICS_PORT": str(port),
            HEAP_SHIFT_VARIABLE: heap_shift,
            **variant.env,
        }
        command = worker_command(
            [QUEUE],
            2,
            *("--include", variant.include, "--without-mingle", "--without-gossip"),
            *("--loglevel", "INFO"),
            *variant.args,
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, frozen and thawed as one
            )
        return Worker(variant, db, process, log, f"http://127.0.0.1:{port}/metrics")

    def _drain_slice(self, worker: Worker, dump: bytes, size: int) -> None:
        client = self.server.client(worker.db)
        client.restore(STAGING, 0, dump)
        while self._events.get_message(timeout=0):
            pass  # notifications of earlier turns
        client.rename(STAGING, QUEUE)
        hammer = Hammer(worker.metrics_url, worker.variant.hammer_per_second or 1.0)
        # The hammer stops before the freeze: a scrape in flight at the freeze would time out.
        with hammer if worker.variant.hammer_per_second else contextlib.nullcontext():
            started = time.perf_counter()
            worker.thaw()
            ended = self._wait_drained(worker, client)
        worker.freeze()
        worker.seconds += ended - started
        worker.scrapes += hammer.scrapes
        worker.scrape_failures += hammer.failures

    def _wait_drained(self, worker: Worker, client: redis.Redis) -> float:
        """The time of the first check that found the slice drained, once confirmed."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while True:
            self._events.get_message(timeout=NOTIFICATION_TIMEOUT_SECONDS)
            if self._drained(client):
                ended = time.perf_counter()
                time.sleep(CONFIRM_SECONDS)
                if self._drained(client):
                    return ended
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{worker.variant.name} stopped or timed out: {worker.log.read_text()[-2000:]}"
                )

    @staticmethod
    def _drained(client: redis.Redis) -> bool:
        with client.pipeline(transaction=False) as pipe:
            pipe.llen(QUEUE)
            pipe.exists(UNACKED)
            queued, unacked = pipe.execute()
        return not queued and not unacked


def sliced(
    variants: Sequence[Variant],
    task: str,
    n: int,
    pairs: int,
    workdir: Path,
    slice_size: int = SLICE_SIZE,
) -> dict[str, list[Run]]:
    """``pairs`` rounds of a :class:`SlicedSession` on a private redis-server."""
    runs: dict[str, list[Run]] = {v.name: [] for v in variants}
    rng = random.Random(11)
    with PrivateRedis() as server:
        session = SlicedSession(server, variants, task, n, workdir, slice_size)
        for _ in range(pairs):
            for name, run in session.round(rng).items():
                runs[name].append(run)
    return runs
