"""Instructions per task by process role, counted by callgrind: ``--suite instructions``.

A drain's rate and CPU seconds need a quiet machine; an instruction count does
not. Valgrind's callgrind counts the instructions a process executes, the same
whatever else the machine runs, so two designs can be compared on a loaded
machine, per process, in a few minutes. What it cannot see: cache misses,
system-call and scheduling costs, and the waits that set a drain's rate. The
counting drain sessions (``--suite drain``) remain the judge of a must.

One run, per task and variant (``off``, ``metrics``, ``all_on`` as in the drain
suite):

1. A prefork worker (concurrency 2, ``-Q default``, our settings) starts under
   ``valgrind --tool=callgrind --trace-children=yes`` on a private redis-server,
   so its pool processes (forked) and its span export process (executed) are
   counted too, each in a file of its own.
2. Once it logged ``ready`` and its start-up work settled, every process's
   counters are zeroed (``callgrind_control --zero``).
3. N messages, published beforehand with the telemetry off (as the drain suite
   publishes them: no ``traceparent``), are renamed into the queue, and the run
   waits until the queue and kombu's ``unacked`` hash are empty.
4. Every process dumps its counters (``callgrind_control --dump``); the worker
   is stopped. Instructions per task are each role's sum over N: ``main``,
   ``child`` (the pool processes), ``export`` (the span export process).

With an ``all_on`` variant, the export process's own work per span is counted
apart too, for each encoder (``bench.export_cost``): in a drain under
callgrind its figure is mostly its timers (see below).

Wall-clock timers (depth polls, readiness probes, the export process's reads
every 50 ms) fire during the drain, which runs about 50 times slower under
callgrind than natively, so they weigh more per task here than in a drain: a
difference between variants that have the same timers is the per-task work.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.drain import QUEUE, ROOT, STAGING, Variant, child_pids, role_cpu_seconds
from bench.redis_server import PrivateRedis, free_port
from telemetry.tracing.export.process import ENCODERS
from worker.command import worker_command

VARIANTS = ("off", "metrics", "all_on")
ROLES = ("main", "child", "export")
READY_TIMEOUT_SECONDS = 600.0
DRAIN_TIMEOUT_SECONDS = 1800.0
#: Start-up has settled once the whole tree used at most this much CPU over a
#: window (callgrind's own idle work is heavier than a native worker's).
QUIET_CPU_SECONDS = 0.15
QUIET_WINDOW_SECONDS = 2.0
SETTLE_TIMEOUT_SECONDS = 180.0
#: The dump file's total: ``summary: <Ir>`` (``totals:`` in some versions).
TOTAL = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)
EXPORT_MODULE = b"telemetry.tracing.export.process"


def valgrind_prefix(outdir: Path) -> list[str]:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("instructions: valgrind is not installed (apt-get install valgrind)")
    return [
        valgrind,
        "--tool=callgrind",
        "--trace-children=yes",
        "--vgdb=yes",
        f"--callgrind-out-file={outdir}/cg.%p",
        "--dump-instr=no",
        "--dump-line=no",
        "--compress-strings=no",
    ]


def callgrind_control(option: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", option, str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )


def stage(server: PrivateRedis, task: str, n: int) -> bytes:
    """``n`` messages published with the telemetry off, kept as a DUMP of the queue."""
    client = server.client()
    client.flushall()
    env = {**os.environ, "REDIS_URL": server.url(), "TELEMETRY_ENABLED": "false"}
    code = (
        "from worker.celery_app import app\n"
        "with app.producer_or_acquire() as producer:\n"
        f"    for _ in range({n}): app.send_task({task!r}, producer=producer)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    dump = client.dump(QUEUE)
    assert dump is not None and client.llen(QUEUE) == n
    client.flushall()
    return dump


def settle(pid: int) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    before = sum(role_cpu_seconds(pid).values())
    while time.monotonic() < deadline:
        time.sleep(QUIET_WINDOW_SECONDS)
        after = sum(role_cpu_seconds(pid).values())
        if after - before <= QUIET_CPU_SECONDS:
            return
        before = after


def role_of(dump: bytes, pid: int, main: int) -> str:
    if pid == main:
        return "main"
    command = next((line for line in dump.splitlines() if line.startswith(b"cmd:")), b"")
    return "export" if EXPORT_MODULE in command else "child"


def count(outdir: Path, main: int, pids: Sequence[int]) -> dict[str, int]:
    """Instructions by role, from each process's dump since its counters were zeroed."""
    by_role = dict.fromkeys(ROLES, 0)
    for pid in pids:
        dumps = sorted(outdir.glob(f"cg.{pid}.*"))
        if not dumps:
            raise RuntimeError(f"process {pid} wrote no dump")
        data = dumps[-1].read_bytes()
        found = TOTAL.search(data)
        if found is None:
            raise RuntimeError(f"no total in {dumps[-1]}")
        by_role[role_of(data, pid, main)] += int(found.group(1))
    return by_role


def run(
    server: PrivateRedis, variant: Variant, task: str, n: int, dump: bytes, db: int
) -> dict[str, Any]:
    """One counted drain of ``n`` tasks; instructions per task by role."""
    outdir = Path(tempfile.mkdtemp(prefix=f"jobpilot-callgrind-{variant.name}-"))
    client = server.client(db)
    client.flushdb()
    client.restore(STAGING, 0, dump)
    env = {
        **os.environ,
        "REDIS_URL": server.url(db),
        "LOG_LEVEL": "INFO",
        "METRICS_PORT": str(free_port()),
        **variant.env,
    }
    command = worker_command(
        [QUEUE],
        2,
        *("--include", variant.include, "--without-mingle", "--without-gossip"),
        *("--loglevel", "INFO"),
    )
    log = outdir / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*valgrind_prefix(outdir), *command],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while " ready." not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{variant.name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        settle(worker.pid)
        pids = [worker.pid, *child_pids(worker.pid)]
        for pid in pids:
            callgrind_control("--zero", pid)
        client.rename(STAGING, QUEUE)
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while client.llen(QUEUE) or client.exists("unacked"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{variant.name} stopped: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        now = [worker.pid, *child_pids(worker.pid)]
        if sorted(now) != sorted(pids):
            raise RuntimeError(f"{variant.name}: processes changed during the drain")
        for pid in pids:
            callgrind_control("--dump", pid)
        counted = count(outdir, worker.pid, pids)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    return {
        "variant": variant.name,
        "task": task,
        "tasks": n,
        "instructions_per_task": {role: round(counted[role] / n) for role in ROLES},
        "callgrind_dir": str(outdir),
    }


def measure(variants: Sequence[Variant], tasks: Sequence[str], n: int) -> dict[str, Any]:
    """Every variant's run on every task, one after the other, and each against ``off``."""
    results: dict[str, Any] = {"n": n, "tasks": {}}
    with PrivateRedis() as server:
        for task in tasks:
            dump = stage(server, task, n)
            rows = [
                run(server, variant, task, n, dump, db) for db, variant in enumerate(variants, 1)
            ]
            base = next((row for row in rows if row["variant"] == "off"), None)
            for row in rows:
                per_task = row["instructions_per_task"]
                row["total_per_task"] = sum(per_task.values())
                if base is not None:
                    row["added_per_task"] = {
                        role: per_task[role] - base["instructions_per_task"][role] for role in ROLES
                    }
            results["tasks"][task] = rows
    if any(variant.name.startswith("all_on") for variant in variants):
        results["export_per_span"] = {encoder: export_cost(encoder) for encoder in ENCODERS}
    return results


def print_table(figures: dict[str, Any]) -> None:
    print(f"instructions per task (callgrind), N={figures['n']}: main / pool / export, total")
    for encoder, per_span in figures.get("export_per_span", {}).items():
        print(
            f"export process, {EXPORT_SPANS} run records, --encoder {encoder}: {per_span:,} a span"
        )
    for task, rows in figures["tasks"].items():
        for row in rows:
            per_task = row["instructions_per_task"]
            added = row.get("added_per_task")
            line = (
                f"{task:<11}{row['variant']:<10}"
                + " / ".join(f"{per_task[role]:>9,}" for role in ROLES)
                + f"  {row['total_per_task']:>10,}"
            )
            if added is not None and row["variant"] != "off":
                line += "   vs off: " + " / ".join(f"{added[role]:+,}" for role in ROLES)
            print(line)


#: Run spans per export-cost run: four full 512-span requests.
EXPORT_SPANS = 2048


def export_cost(encoder: str, spans: int = EXPORT_SPANS) -> int:
    """Instructions per span of the export process's work on ``spans`` run records
    (``bench.export_cost``), posted to a discarding endpoint outside callgrind."""
    from bench.export_cost import UNDER_CALLGRIND
    from bench.sink import DiscardingSink

    sink = DiscardingSink()
    outdir = Path(tempfile.mkdtemp(prefix=f"jobpilot-callgrind-export-{encoder}-"))
    command = [sys.executable, "-m", "bench.export_cost", "--spans", str(spans)]
    command += ["--encoder", encoder, "--endpoint", sink.endpoint]
    done = subprocess.run(
        [*valgrind_prefix(outdir), *command],
        cwd=ROOT,
        env={**os.environ, UNDER_CALLGRIND: "1"},
        capture_output=True,
        timeout=DRAIN_TIMEOUT_SECONDS,
    )
    if done.returncode != 0:
        raise RuntimeError(f"export_cost failed: {done.stderr.decode()[-2000:]}")
    dumps = sorted(outdir.glob("cg.*.*"), key=lambda path: int(path.suffix[1:]))
    found = TOTAL.search(dumps[-1].read_bytes())
    if found is None or len(dumps) < 2:
        raise RuntimeError(f"no dumps in {outdir}")
    return round(int(found.group(1)) / spans)
