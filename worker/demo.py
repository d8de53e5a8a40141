"""``python -m worker.demo``: a worker, a mixed workload on all four queues, and what happened.

Starts a real worker (prefork, concurrency 2), sends agent, briefing, scraping
and database tasks plus one poison message, waits for every result with a
timeout, prints a per-queue table and the dead letters, then stops the worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from celery.result import AsyncResult

from worker.celery_app import app
from worker.deadletters.writer import DeadLetterWriter
from worker.routing import QUEUE_NAMES, queue_for

RESULT_TIMEOUT_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 30.0


def workload(run_id: str) -> list[tuple[str, list[Any]]]:
    jobs: list[tuple[str, list[Any]]] = []
    for step in range(5):
        jobs.append(("agent_plan_step", [run_id, step, "prepare the weekly report"]))
    for n in range(5):
        jobs.append(
            ("briefing_compile", [f"topic-{n}", ["Markets moved today", "Markets rallied again"]])
        )
    for n in range(5):
        jobs.append(("scrape_page", [f"https://example.org/page/{n}", 0.05]))
    for n in range(5):
        jobs.append(("example_task", [f"demo-{run_id}-{n}", {"n": n}]))
    jobs.append(("example_task", [""]))  # refused: dead-lettered as bad_arguments
    return jobs


def start_worker(log_path: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "-Q",
        ",".join(QUEUE_NAMES),
        "-c",
        "2",
    ]
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if " ready." in log_path.read_text(errors="replace"):
            print(f"demo: worker {process.pid} ready; its log is {log_path}")
            return process
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"demo: the worker did not become ready; see {log_path}")


def main() -> int:
    run_id = uuid.uuid4().hex[:8]
    dead_before = DeadLetterWriter.for_app(app).store.size()
    worker = start_worker(Path(".run") / "demo-worker.log")
    try:
        sent = [
            (name, app.send_task(name, args=args, ignore_result=False))
            for name, args in workload(run_id)
        ]
        outcomes: Counter[tuple[str, str]] = Counter()
        deadline = time.monotonic() + RESULT_TIMEOUT_SECONDS
        for name, result in sent:
            outcomes[(queue_for(name), wait_for(result, deadline))] += 1
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    print_summary(outcomes, DeadLetterWriter.for_app(app).store.size() - dead_before)
    return 0


def wait_for(result: AsyncResult, deadline: float) -> str:
    """SUCCESS, FAILURE, or 'no result' for a message that was dead-lettered."""
    while time.monotonic() < deadline:
        if result.ready():
            return str(result.state).lower()
        time.sleep(0.05)
    return "no result"


def print_summary(outcomes: Counter[tuple[str, str]], dead_letters: int) -> None:
    states = sorted({state for _, state in outcomes})
    print(f"\n{'queue':<12}" + "".join(f"{s:>12}" for s in states))
    for queue in QUEUE_NAMES:
        print(f"{queue:<12}" + "".join(f"{outcomes[(queue, s)]:>12}" for s in states))
    print(f"\nnew dead letters: {dead_letters} (python -m worker.deadletters list)")


if __name__ == "__main__":
    raise SystemExit(main())
