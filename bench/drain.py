"""Drain throughput of a real prefork worker, variants interleaved, ratios side by side.

One run: N messages are published once into a staging list and copied into
place (DUMP/RESTORE, then RENAME) only after the worker has logged "ready", so
start-up is excluded. The run ends when the queue and kombu's ``unacked`` hash
are both empty. CPU seconds of the worker's process tree (main process and pool
children, from /proc) are read at both ends.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.hammer import Hammer
from telemetry.tracing.export.supervisor import is_export_process
from worker.command import worker_command

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "default"
STAGING = "bench:staging"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DRAIN_TIMEOUT_SECONDS = 600.0
#: How often the harness checks whether the queue is drained. Each check is a
#: Redis round trip competing with the worker for the same two cores, so it is
#: kept rare: 50 ms of end-time resolution is 0.25% of a 20 s drain.
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Variant:
    name: str
    env: Mapping[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()
    #: Scrapes of /metrics per second while the worker drains (0: none).
    hammer_per_second: float = 0.0
    #: Modules the worker imports besides the benchmark's tasks (``--include``).
    includes: Sequence[str] = ()

    @property
    def include(self) -> str:
        return ",".join(("bench.tasks", *self.includes))


@dataclass(frozen=True)
class Run:
    variant: str
    task: str
    tasks: int
    seconds: float
    cpu_seconds: float
    scrapes: int = 0
    scrape_failures: int = 0
    #: ``cpu_seconds`` by process role (``role_cpu_seconds``), where it was read.
    cpu_seconds_by_role: Mapping[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds

    @property
    def cpu_us_per_task(self) -> float:
        return self.cpu_seconds / self.tasks * 1e6


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` plus its reaped children (cutime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def child_pids(pid: int) -> list[int]:
    """The worker's pool processes (and its span export process): the main process's children."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def role(pid: int) -> str:
    """``export`` for the worker's span export process, ``child`` for a pool process."""
    return "export" if is_export_process(pid) else "child"


def role_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of a worker's processes by role: ``main`` (with the children it has
    reaped), ``child`` (its live pool processes) and ``export`` (the span export process)."""
    seconds = {"main": process_cpu_seconds(pid), "child": 0.0, "export": 0.0}
    for child in child_pids(pid):
        with contextlib.suppress(FileNotFoundError):
            seconds[role(child)] += process_cpu_seconds(child)
    return seconds


def tree_cpu_seconds(pid: int) -> float:
    return sum(role_cpu_seconds(pid).values())


#: A worker has settled once its whole tree used at most this much CPU over one
#: window: start-up work (imports in the export process, the first readiness
#: probe) is then done, and not charged to the first tasks.
QUIET_CPU_SECONDS = 0.02
QUIET_WINDOW_SECONDS = 0.5
SETTLE_TIMEOUT_SECONDS = 20.0


def settle(pids: Sequence[int]) -> None:
    """Wait until every worker tree in ``pids`` is quiet (or the timeout passes)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    before = [tree_cpu_seconds(pid) for pid in pids]
    while time.monotonic() < deadline:
        time.sleep(QUIET_WINDOW_SECONDS)
        after = [tree_cpu_seconds(pid) for pid in pids]
        if all(b - a <= QUIET_CPU_SECONDS for a, b in zip(before, after, strict=True)):
            return
        before = after


class Drainer:
    """Runs one variant at a time against a Redis database the benchmark owns."""

    def __init__(self, redis_url: str, workdir: Path) -> None:
        self.redis_url = redis_url
        self.client = redis.Redis.from_url(redis_url)
        self.workdir = workdir
        self._staged: dict[tuple[str, int], bytes] = {}

    def stage(self, task: str, n: int) -> bytes:
        """Publish ``n`` messages once and keep their list as a DUMP to restore per run."""
        key = (task, n)
        if key not in self._staged:
            self.client.flushdb()
            env = {**os.environ, "REDIS_URL": self.redis_url, "TELEMETRY_ENABLED": "false"}
            code = (
                "from worker.celery_app import app\n"
                "with app.producer_or_acquire() as producer:\n"
                f"    for _ in range({n}): app.send_task({task!r}, producer=producer)\n"
            )
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
            dump = self.client.dump(QUEUE)
            assert dump is not None and self.client.llen(QUEUE) == n
            self._staged[key] = dump
        return self._staged[key]

    def run(
        self,
        variant: Variant,
        task: str,
        n: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Run:
        """One drain of ``n`` tasks; ``on_progress(done, worker_pid)`` is called on every
        poll of the queue, the last time with ``done == n`` before the worker stops."""
        dump = self.stage(task, n)
        self.client.flushdb()
        self.client.restore(STAGING, 0, dump)
        log_path = self.workdir / f"{variant.name}.log"
        env = {**os.environ, "REDIS_URL": self.redis_url, "LOG_LEVEL": "INFO", **variant.env}
        command = worker_command(
            [QUEUE],
            2,
            *(
                "--include",
                variant.include,
                "--without-mingle",
                "--without-gossip",
                "--loglevel",
                "INFO",
            ),
            *variant.args,
        )
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        metrics_url = f"http://127.0.0.1:{env.get('METRICS_PORT', '9464')}/metrics"
        hammer = Hammer(metrics_url, variant.hammer_per_second or 1.0)
        try:
            self._wait_ready(worker, log_path)
            settle([worker.pid])
            cpu_before = tree_cpu_seconds(worker.pid)
            with hammer if variant.hammer_per_second else contextlib.nullcontext():
                started = time.perf_counter()
                self.client.rename(STAGING, QUEUE)
                self._wait_drained(worker, n, on_progress)
                elapsed = time.perf_counter() - started
            cpu = tree_cpu_seconds(worker.pid) - cpu_before
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        return Run(variant.name, task, n, elapsed, cpu, hammer.scrapes, hammer.failures)

    @staticmethod
    def _wait_ready(worker: subprocess.Popen[bytes], log_path: Path) -> None:
        deadline = time.monotonic() + 60
        while " ready." not in log_path.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not become ready: {log_path.read_text()[-2000:]}")
            time.sleep(0.02)

    def _wait_drained(
        self,
        worker: subprocess.Popen[bytes],
        n: int,
        on_progress: Callable[[int, int], None] | None,
    ) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while True:
            with self.client.pipeline() as pipe:
                pipe.llen(QUEUE)
                pipe.hlen("unacked")
                queued, unacked = pipe.execute()
            if on_progress is not None:
                on_progress(n - queued - unacked, worker.pid)
            if queued == 0 and unacked == 0:
                return
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker stopped or timed out before draining the queue")
            time.sleep(POLL_SECONDS)


def bootstrap_interval(
    ratios: Sequence[float], rounds: int = 2000, seed: int = 7
) -> tuple[float, float]:
    """95% bootstrap interval of the median ratio."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def summarize(runs: dict[str, list[Run]], baseline: str) -> list[dict[str, object]]:
    base = runs[baseline]
    rows: list[dict[str, object]] = []
    for name, series in runs.items():
        ratios = [r.rate / b.rate for r, b in zip(series, base, strict=True)]
        low, high = bootstrap_interval(ratios)
        rows.append(
            {
                "variant": name,
                "tasks_per_second_median": statistics.median(r.rate for r in series),
                "ratio_median": statistics.median(ratios),
                "ratio_ci95": [low, high],
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "cpu_us_per_task_median": statistics.median(r.cpu_us_per_task for r in series),
                "cpu_ratio_median": statistics.median(
                    r.cpu_us_per_task / b.cpu_us_per_task for r, b in zip(series, base, strict=True)
                ),
                "cpu_us_per_task_by_role_median": {
                    role: statistics.median(
                        r.cpu_seconds_by_role[role] / r.tasks * 1e6 for r in series
                    )
                    for role in series[0].cpu_seconds_by_role
                },
                "scrapes": sum(r.scrapes for r in series),
                "scrape_failures": sum(r.scrape_failures for r in series),
                "rounds": [
                    {"tasks_per_second": r.rate, "cpu_us_per_task": r.cpu_us_per_task}
                    for r in series
                ],
            }
        )
    return rows


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="jobpilot-bench-"))
