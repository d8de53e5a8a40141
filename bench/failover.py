"""What a Sentinel failover loses: acknowledged publishes that the new master never had.

Redis replicates asynchronously. A publish the master acknowledged in the moment
before it died may not have reached the replica that Sentinel promotes. Each run
starts a fresh master, replica and three sentinels (:mod:`bench.sentinel`),
publishes tasks through the sentinels as fast as one producer can, SIGKILLs the
master mid-stream, and after the promotion compares the ids whose publish
returned with the ids in the new master's queue. No worker consumes, so every
message is either in the queue or lost.

Just before the kill it reads how far the replica trails (``INFO replication``:
the master's offset less the one the replica last acknowledged, in bytes).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from bench.sentinel import SentinelGroup

QUEUE = "failover"
#: Seconds of stream before the kill: the window is the last one of them.
STREAM_SECONDS = 2.0
PROMOTION_TIMEOUT_SECONDS = 30.0


def _replica_trails_by(master: redis.Redis) -> int:
    """Bytes of replication stream the master has and its replica has not acknowledged."""
    info = master.info("replication")
    return int(info["master_repl_offset"]) - int(info["slave0"]["offset"])


def one_run(workdir: Path) -> dict[str, Any]:
    group = SentinelGroup(workdir).start()
    try:
        producer = group.producer()
        acked: dict[str, float] = {}
        stop = threading.Event()

        def stream() -> None:
            while not stop.is_set():
                try:
                    result = producer.send_task("bench_noop", queue=QUEUE, retry=False)
                except Exception:  # refused: the producer knows, nothing is lost
                    stop.wait(0.01)
                    continue
                acked[result.id] = time.monotonic()

        publisher = threading.Thread(target=stream, daemon=True)
        publisher.start()
        time.sleep(STREAM_SECONDS)
        trailing = _replica_trails_by(redis.Redis(port=group.master.port))
        group.master.kill()
        killed_at = time.monotonic()
        deadline = killed_at + PROMOTION_TIMEOUT_SECONDS
        while not group.promoted():
            if time.monotonic() > deadline:
                raise RuntimeError("Sentinel promoted no replica")
            time.sleep(0.05)
        promoted_at = time.monotonic()
        stop.set()
        publisher.join(10)
        queued = {
            json.loads(raw)["headers"]["id"]
            for raw in redis.Redis(port=group.replica.port).lrange(QUEUE, 0, -1)
        }
    finally:
        group.stop()
    before = {key for key, at in acked.items() if at <= killed_at}
    window = {key for key in before if acked[key] >= killed_at - 1.0}
    lost = before - queued
    return {
        "published_before_kill": len(before),
        "published_in_last_second": len(window),
        "lost": len(lost),
        "lost_outside_last_second": len(lost - window),
        "replica_trailing_bytes_before_kill": trailing,
        "kill_to_promotion_seconds": round(promoted_at - killed_at, 2),
    }


def measure(runs: int) -> dict[str, Any]:
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-failover-") as workdir:
            results.append(one_run(Path(workdir)))
    return {"runs": results, "lost_total": sum(r["lost"] for r in results)}


def print_table(report: dict[str, Any]) -> None:
    print("\nSentinel failover (publishes acknowledged by the killed master, lost by the new one)")
    print(
        f"{'run':>4} {'before kill':>12} {'last second':>12} {'lost':>5} "
        f"{'trailing bytes':>15} {'promotion s':>12}"
    )
    for index, run in enumerate(report["runs"], 1):
        print(
            f"{index:>4} {run['published_before_kill']:>12} {run['published_in_last_second']:>12} "
            f"{run['lost']:>5} {run['replica_trailing_bytes_before_kill']:>15} "
            f"{run['kill_to_promotion_seconds']:>12}"
        )
