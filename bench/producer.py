"""What ``telemetry.install(app)`` costs a producer (``python -m bench --suite producer``).

Each run is a fresh process that publishes N tasks with ``app.send_task`` (one
producer, the app's own pool) and reports its rate. Variants, interleaved:

* ``plain``: the telemetry uninstalled;
* ``installed``: ``telemetry.install(app)`` with tracing off (the header, the
  counter and the ``argsrepr`` scrub);
* ``traced``: ``telemetry.install(app)`` with a PRODUCER span per publish,
  exported over OTLP/HTTP to an endpoint that discards bodies.

"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from typing import Any

import redis

from bench.drain import ROOT, bootstrap_interval
from bench.sink import DiscardingSink

PUBLISH = """
import json, os, sys, time
import telemetry
from worker.celery_app import app  # importing the worker installs the telemetry
if os.environ["BENCH_INSTALL"] == "0":
    telemetry.uninstall(app)
n = int(sys.argv[1])
with app.producer_or_acquire() as producer:
    app.send_task("bench_noop", producer=producer)  # connect first
    started = time.perf_counter()
    for _ in range(n):
        app.send_task("bench_noop", args=[1, "two"], producer=producer)
    elapsed = time.perf_counter() - started
print(json.dumps({"rate": n / elapsed}))
"""


def run(variant: dict[str, str], n: int, redis_url: str) -> float:
    redis.Redis.from_url(redis_url).flushdb()
    env = {**os.environ, "REDIS_URL": redis_url, **variant}
    done = subprocess.run(
        [sys.executable, "-c", PUBLISH, str(n)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    rate: float = json.loads(done.stdout.strip().splitlines()[-1])["rate"]
    return rate


def measure(redis_url: str, n: int, pairs: int, sink: DiscardingSink) -> list[dict[str, Any]]:
    variants = {
        "plain": {"BENCH_INSTALL": "0", "OTEL_SDK_DISABLED": "true"},
        "installed": {"BENCH_INSTALL": "1", "OTEL_SDK_DISABLED": "true"},
        "traced": {"BENCH_INSTALL": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint},
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    rng = random.Random(5)
    for _ in range(pairs):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            rates[name].append(run(variants[name], n, redis_url))
    rows = []
    for name, series in rates.items():
        ratios = [r / b for r, b in zip(series, rates["plain"], strict=True)]
        low, high = bootstrap_interval(ratios)
        rows.append(
            {
                "variant": name,
                "n": n,
                "pairs": pairs,
                "publishes_per_second_median": statistics.median(series),
                "ratio_median": statistics.median(ratios),
                "ratio_ci95": [low, high],
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'producer':<10}{'publishes/s':>12}{'ratio':>8}{'95% CI':>16}")
    for row in rows:
        low, high = row["ratio_ci95"]
        print(
            f"{row['variant']:<10}{row['publishes_per_second_median']:>12.0f}"
            f"{row['ratio_median']:>8.3f}{f'[{low:.3f}, {high:.3f}]':>16}"
        )
