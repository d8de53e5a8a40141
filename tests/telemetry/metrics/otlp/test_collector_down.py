"""With the collector down for 30 s, nothing blocks, memory stays flat, and nothing is lost."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable

import pytest

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.scrape import samples_by_labels
from tests.support.worker_process import WorkerProcess, free_port, wait_until
from tests.telemetry.tracing.test_collector_down import rss_kib
from worker.celery_app import app

pytestmark = [pytest.mark.integration, pytest.mark.faults]

DOWN_SECONDS = 30
BATCH = 40
EXPORT_FAILURE_LINE = "metric export failed"


def timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, time.monotonic() - started


def test_a_hung_collector_for_30_s_blocks_nothing_and_loses_nothing(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    # Given a collector that takes connections and never answers (a stopped process)
    port = free_port()
    hung = socket.socket()
    hung.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hung.bind(("127.0.0.1", port))
    hung.listen(64)
    # And a worker exporting to it every 200 ms, with the exporter's default 10 s timeout
    worker = start_worker(
        {
            **worker_env,
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
            "OTEL_TRACES_EXPORTER": "none",
            # Its own memory flat too: the duplicate-execution window keeps every
            # task id it starts (100,000 by default), which would grow it here.
            "DUPLICATE_WINDOW_MAX": "100",
            "METRICS_RENDER_INTERVAL": "0",  # /metrics as of now, not up to 1 s before
        }
    )
    livez = worker.metrics_url.replace("/metrics", "/livez")
    # When tasks run for 30 s while it is down
    started = time.monotonic()
    sent = batches = 0
    slowest_scrape = 0.0
    rss: list[int] = []
    while time.monotonic() - started < DOWN_SECONDS:
        results = [
            app.send_task("briefing_compile", args=["t", ["x"]], ignore_result=False)
            for _ in range(BATCH)
        ]
        for result in results:
            result.get(timeout=10)  # Then every batch completes
        sent += BATCH
        batches += 1
        for url in (livez, worker.metrics_url):
            status, seconds = timed_get(url)
            assert status == 200
            slowest_scrape = max(slowest_scrape, seconds)
        if time.monotonic() - started > 10:
            rss.append(rss_kib(worker.pid))
    print(f"{batches} batches, {sent} tasks; slowest scrape {slowest_scrape:.3f} s; RSS {rss}")
    # And /livez and /metrics answered at once throughout
    assert slowest_scrape < 1.0
    # And the main process's memory stayed flat over the last 20 s
    assert rss[-1] - rss[0] <= 2048, rss
    # And the failure was logged once, not once per attempt
    assert worker.log().count(EXPORT_FAILURE_LINE) == 1, worker.log()[-3000:]
    assert worker.log().count("opentelemetry.exporter") <= 1
    # And when the collector is back on its port, the next export carries every count
    hung.close()
    receiver = OtlpReceiver(port).start()
    try:

        def caught_up() -> bool:
            points = receiver.latest("messaging.client.consumed.messages")
            return any(
                p.attributes["celery.task.name"] == "briefing_compile" and p.value == sent
                for p in points.values()
            )

        wait_until(caught_up, 20, interval=0.2, message="the counts after the collector is back")
        served = samples_by_labels(worker.metrics_url)["celery_task_received_total"]
        assert served[(("queue", "briefings"), ("task", "briefing_compile"))] == sent
    finally:
        receiver.stop()
