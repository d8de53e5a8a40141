"""What a scrape and a depth poll cost: render time and size, cached latency, Redis round trips.

* Render: the exposition rendered from a registry holding every per-(queue,
  task) series for 200 and for 800 pairs, its time and size.
* Cached scrapes: ``/metrics`` fetched over HTTP from the worker's own server
  while the render cache is warm, p50 and p99 (the process's collector paused
  while timing, so the server is measured, not this process).
* Depth poll: one ``QueuePoller.poll()`` against Redis at 4 and at 64 queues,
  its round trips (pipeline executions) and the commands Redis processed.
"""

from __future__ import annotations

import gc
import statistics
import time
import urllib.request
from typing import Any

import redis
from prometheus_client import CollectorRegistry

from telemetry.endpoints import Liveness, RenderCache, TelemetryServer
from telemetry.failed.records import Kind
from telemetry.failed.store import Caps, FailedStore, StoreKeys
from telemetry.metrics.at_least_once import StartedWindow
from telemetry.metrics.catalogue import BrokerMetrics, WorkerMetrics
from telemetry.metrics.queues import QueuePoller
from telemetry.metrics.recorder import DeliveryRecorder

QUEUES = 4
PAIRS = (200, 800)
POLL_QUEUES = (4, 64)


def populated(pairs: int) -> CollectorRegistry:
    """A registry with every series of ``pairs`` (queue, task) pairs over four queues."""
    registry = CollectorRegistry()
    recorder = DeliveryRecorder(
        WorkerMetrics(registry),
        {f"q{n}" for n in range(QUEUES)},
        lambda _: True,
        StartedWindow(3600, 100_000),
    )
    for n in range(pairs):
        recorder.series(f"q{n % QUEUES}", f"task_{n}")
    return registry


def render_cost(pairs: int, scrapes: int) -> dict[str, Any]:
    registry = populated(pairs)
    cache = RenderCache(registry, interval=3600)
    started = time.perf_counter()
    body = cache.render(openmetrics=False)
    render_ms = (time.perf_counter() - started) * 1000
    server = TelemetryServer("127.0.0.1", 0, cache, Liveness(60))
    server.start()
    host, port = server.address
    url = f"http://{host}:{port}/metrics"
    latencies: list[float] = []
    try:
        urllib.request.urlopen(url, timeout=5).read()  # warm-up: connection set-up, first buffers
        gc.disable()
        try:
            for _ in range(scrapes):
                t = time.perf_counter()
                with urllib.request.urlopen(url, timeout=5) as response:
                    response.read()
                latencies.append((time.perf_counter() - t) * 1000)
        finally:
            gc.enable()
    finally:
        server.stop()
    return {
        "pairs": pairs,
        "series": sum(len(family.samples) for family in registry.collect()),
        "render_ms": round(render_ms, 2),
        "size_bytes": len(body),
        "cached_p50_ms": round(statistics.median(latencies), 3),
        "cached_p99_ms": round(statistics.quantiles(latencies, n=100)[98], 3),
        "scrapes": scrapes,
    }


def poll_cost(client: redis.Redis, queues: int) -> dict[str, Any]:
    poller = QueuePoller(
        client,
        [f"bench-q{n}" for n in range(queues)],
        {},
        {
            Kind.DEAD_LETTER: FailedStore(
                client, StoreKeys.of("jobpilot:deadletter"), Caps(10_000, 67_108_864)
            )
        },
        BrokerMetrics(CollectorRegistry()),
    )
    poller.poll()  # loads the dead letters' keep script into the server
    poller.round_trips = 0
    before = int(client.info("stats")["total_commands_processed"])
    started = time.perf_counter()
    poller.poll()
    poll_ms = (time.perf_counter() - started) * 1000
    commands = int(client.info("stats")["total_commands_processed"]) - before - 1  # INFO itself
    return {
        "queues": queues,
        "round_trips": poller.round_trips,
        "redis_commands": commands,
        "poll_ms": round(poll_ms, 2),
    }


def measure(redis_url: str, scrapes: int = 1000) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    return {
        "render": [render_cost(pairs, scrapes) for pairs in PAIRS],
        "depth_poll": [poll_cost(client, queues) for queues in POLL_QUEUES],
    }


def print_table(figures: dict[str, Any]) -> None:
    print(f"{'pairs':>6}{'series':>8}{'render ms':>11}{'bytes':>9}{'cached p50':>12}{'p99 ms':>8}")
    for row in figures["render"]:
        print(
            f"{row['pairs']:>6}{row['series']:>8}{row['render_ms']:>11.1f}{row['size_bytes']:>9}"
            f"{row['cached_p50_ms']:>12.2f}{row['cached_p99_ms']:>8.2f}"
        )
    print(f"{'queues':>6}{'round trips':>13}{'commands':>10}{'poll ms':>9}")
    for row in figures["depth_poll"]:
        print(
            f"{row['queues']:>6}{row['round_trips']:>13}{row['redis_commands']:>10}{row['poll_ms']:>9.2f}"
        )
