"""``python -m worker.demo``: a worker, a mixed workload on all four queues, and what happened.

Says in one line where traces go, starts a real worker (prefork, concurrency 2), sends agent,
briefing, scraping and database tasks plus one refused message, waits for every result with a
timeout, then prints a per-queue table built from the worker's own /metrics (depth, started,
succeeded, failed, p50/p95 of wait and runtime) and the dead letters, and stops the worker.
Then the broker exporter serves the failed-work page, its refused message there, until Ctrl-C
(``worker.demo_page``).

With no collector listening where the ``OTEL_*`` variables point, the demo turns span export off
for itself and its worker (``OTEL_TRACES_EXPORTER=none``) and says so, rather than let the
exporter log a connection error a newcomer would read as a failure. A worker started any other way
is untouched: it keeps exporting, and logs a dead collector at most once a minute.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from celery.result import AsyncResult

from telemetry.deadletters.writer import DeadLetterWriter
from telemetry.delivery.observers import FAILED, SUCCEEDED
from telemetry.tracing.providers import TRUE_VALUES
from worker.celery_app import app
from worker.command import worker_command
from worker.demo_page import ServedPage
from worker.routing import QUEUE_NAMES, queue_for

RESULT_TIMEOUT_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 30.0
#: How long the one probe of the collector may take.
PROBE_TIMEOUT_SECONDS = 1.0
#: The OTLP exporters' defaults, per protocol, when no endpoint variable is set.
DEFAULT_ENDPOINTS = {"http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"}


def traces_endpoint(environ: MutableMapping[str, str]) -> str:
    """Where the OTLP span exporter sends, resolved from the same variables it reads."""
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if endpoint:
        return endpoint
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINTS.get(
        protocol, DEFAULT_ENDPOINTS["http/protobuf"]
    )
    return base if protocol == "grpc" else base.rstrip("/") + "/v1/traces"


def listening(endpoint: str) -> bool:
    """Whether anything accepts a TCP connection at the endpoint's host and port."""
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), PROBE_TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


def traces_line(environ: MutableMapping[str, str]) -> str:
    """One line on where the demo's traces go; with no collector, export is turned off in
    ``environ`` (the demo's, which its worker inherits) and the line says so."""
    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in TRUE_VALUES:
        return f"traces: off (OTEL_SDK_DISABLED={environ['OTEL_SDK_DISABLED']})"
    if exporter != "otlp":
        where = "printed in the worker's log" if exporter == "console" else "off"
        return f"traces: {where} (OTEL_TRACES_EXPORTER={exporter})"
    endpoint = traces_endpoint(environ)
    if listening(endpoint):
        return f"traces: sent to {endpoint}"
    environ["OTEL_TRACES_EXPORTER"] = "none"
    return f"traces: off (no collector at {endpoint}; start one with docker compose up)"


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
    command = worker_command(QUEUE_NAMES, 2)
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
    # Importing the worker installed the telemetry: each publish is stamped with the
    # time the wait-time histogram measures from.
    print(f"demo: {traces_line(os.environ)}")
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
        time.sleep(app.conf.jobpilot_settings.metrics_render_interval + 0.1)
        exposition = scrape_metrics()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    print_summary(outcomes, DeadLetterWriter.for_app(app).store.size() - dead_before)
    if exposition is not None:
        print_metrics_table(exposition)
    page = ServedPage.start(app.conf.jobpilot_settings, Path(".run") / "demo-exporter.log")
    return page.serve_until_interrupted()


def scrape_metrics() -> str | None:
    settings = app.conf.jobpilot_settings
    host = "127.0.0.1" if settings.metrics_host in ("0.0.0.0", "::") else settings.metrics_host
    try:
        with urllib.request.urlopen(
            f"http://{host}:{settings.metrics_port}/metrics", timeout=5
        ) as response:
            return str(response.read().decode())
    except OSError as exc:
        print(f"demo: could not read the worker's /metrics: {exc}")
        return None


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile over cumulative (upper bound, count) pairs, as Prometheus computes it."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if total == 0:
        return None
    rank, previous_bound, previous_count = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / max(
                count - previous_count, 1e-9
            )
        previous_bound, previous_count = bound, count
    return None


def print_metrics_table(exposition: str) -> None:
    """Per queue: depth, started, succeeded, failed, p50/p95 of wait and runtime."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[tuple[str, str], float] = defaultdict(float)
    buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            queue = sample.labels.get("queue")
            if queue is None:
                continue
            if sample.name == "celery_queue_depth":
                sums[(queue, "depth")] = sample.value
            elif sample.name == "celery_task_started_total":
                sums[(queue, "started")] += sample.value
            elif sample.name == "celery_task_finished_total" and sample.labels["outcome"] in (
                SUCCEEDED,
                FAILED,
            ):
                sums[(queue, sample.labels["outcome"])] += sample.value
            elif sample.name.endswith("_seconds_bucket") and "task" in sample.labels:
                kind = "wait" if "queue_wait" in sample.name else "runtime"
                buckets[(queue, kind)][float(sample.labels["le"])] += sample.value

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}ms"

    print(
        f"\n{'queue':<10}{'depth':>6}{'started':>8}{'ok':>5}{'failed':>7}{'wait p50':>10}{'p95':>8}{'run p50':>9}{'p95':>8}"
    )
    for queue in QUEUE_NAMES:
        wait, run = (
            list(buckets[(queue, "wait")].items()),
            list(buckets[(queue, "runtime")].items()),
        )
        print(
            f"{queue:<10}{sums[(queue, 'depth')]:>6.0f}{sums[(queue, 'started')]:>8.0f}"
            f"{sums[(queue, 'succeeded')]:>5.0f}{sums[(queue, 'failed')]:>7.0f}"
            f"{ms(quantile(0.5, wait)):>10}{ms(quantile(0.95, wait)):>8}"
            f"{ms(quantile(0.5, run)):>9}{ms(quantile(0.95, run)):>8}"
        )


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
    print(
        f"\nnew dead letters: {dead_letters} "
        "(python -m telemetry.failed -A worker list --kind dead_letter)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
