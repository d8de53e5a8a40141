"""Engine lifetime for the DB bridge: a cached engine per process vs one per task run.

    python -m bench.db_engine [--url postgresql+asyncpg://postgres@127.0.0.1/test] [--n 300]

Each iteration is what example_task does: ``asyncio.run`` of one upsert-sized
round trip. Reports the median milliseconds per iteration for both designs,
interleaved in blocks so that drift on a noisy machine hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from worker.db.bridge import engine_for, forget_engines

BLOCK = 20


async def one_round_trip(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def per_task(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        await one_round_trip(engine)
    finally:
        await engine.dispose()


async def cached(url: str) -> None:
    await one_round_trip(engine_for(url))


def timed(fn, url: str) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    asyncio.run(fn(url))
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.db_engine")
    parser.add_argument("--url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    forget_engines()
    timed(cached, args.url)  # the first connect pays the dialect's initialisation once
    results: dict[str, list[float]] = {"cached engine": [], "engine per task": []}
    for _ in range(args.n // BLOCK):
        results["cached engine"] += [timed(cached, args.url) for _ in range(BLOCK)]
        results["engine per task"] += [timed(per_task, args.url) for _ in range(BLOCK)]
    for name, samples in results.items():
        print(
            f"{name:<16} median {statistics.median(samples):.2f} ms  p90 {statistics.quantiles(samples, n=10)[-1]:.2f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
