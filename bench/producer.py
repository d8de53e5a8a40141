"""``python -m bench.producer [--n N] [--pairs P]``: what ``telemetry.install(app)`` costs a producer.

Each run is a fresh process that publishes N tasks with ``app.send_task`` (one
producer, the app's own pool) and reports its rate. Variants, interleaved:

* ``plain``: no ``telemetry.install``;
* ``installed``: ``telemetry.install(app)`` with tracing off (the header, the
  counter and the ``argsrepr`` scrub);
* ``traced``: ``telemetry.install(app)`` with a PRODUCER span per publish,
  exported over OTLP/HTTP to an endpoint that discards bodies.

Writes bench/results/producer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import redis

from bench.drain import ROOT, bootstrap_interval
from bench.sink import DiscardingSink

RESULTS = Path(__file__).with_name("results") / "producer.json"
PUBLISH = """
import json, os, sys, time
from worker.celery_app import app
if os.environ["BENCH_INSTALL"] == "1":
    import telemetry
    telemetry.install(app)
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.producer")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--redis-url", default="redis://localhost:6379/12")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    sink = DiscardingSink()
    variants = {
        "plain": {"BENCH_INSTALL": "0", "OTEL_SDK_DISABLED": "true"},
        "installed": {"BENCH_INSTALL": "1", "OTEL_SDK_DISABLED": "true"},
        "traced": {"BENCH_INSTALL": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint},
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    rng = random.Random(5)
    for _ in range(args.pairs):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            rates[name].append(run(variants[name], args.n, args.redis_url))
    rows = []
    for name, series in rates.items():
        ratios = [r / b for r, b in zip(series, rates["plain"], strict=True)]
        low, high = bootstrap_interval(ratios)
        rows.append(
            {
                "variant": name,
                "publishes_per_second_median": statistics.median(series),
                "ratio_median": statistics.median(ratios),
                "ratio_ci95": [low, high],
            }
        )
        print(
            f"{name:<10}{statistics.median(series):>10.0f}/s  ratio {statistics.median(ratios):.3f} "
            f"[{low:.3f}, {high:.3f}]"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"n": args.n, "pairs": args.pairs, "rows": rows}, indent=2) + "\n"
    )
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
