"""One warning at start when the Redis broker cannot keep its promises.

"Nothing lost" needs two things from Redis (docs/guarantees.md):

* ``maxmemory-policy noeviction``: any other policy may evict queue lists, the
  ``unacked`` hash or dead letters when memory runs out;
* AOF persistence: without it a Redis restart loses every queued message
  (RDB snapshots lose everything since the last one).

Read with ``INFO``, which managed services allow where ``CONFIG`` is often
disabled. A broker that cannot be asked is not warned about here: the
connection's own errors say enough.

Redis Cluster is refused outright, at ``worker_init``: kombu's Redis transport
does not support it (a queue's priority sub-lists and the unacked hash and index
would hash to different slots), and Cluster has no URL scheme to refuse it by,
so ``INFO cluster`` is asked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from celery import Celery

from telemetry.broker import broker_redis

logger = logging.getLogger("worker.broker")
CHECK_TIMEOUT_SECONDS = 2.0
CLUSTER_REFUSAL = "broker: Redis Cluster is not supported by kombu"


def broker_problems(info: Mapping[str, Any]) -> list[str]:
    """What is wrong with a broker, from its ``INFO memory`` and ``INFO persistence``."""
    problems = []
    policy = str(info.get("maxmemory_policy", "unknown"))
    if policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}, not noeviction: Redis may evict queued messages"
        )
    if str(info.get("aof_enabled", "0")) != "1":
        problems.append("AOF persistence is off: a Redis restart loses queued messages")
    return problems


def warn_about_broker(celery_app: Celery) -> list[str]:
    """Log one warning naming every problem; returns them (empty when all is well)."""
    try:
        client = broker_redis(celery_app, socket_timeout=CHECK_TIMEOUT_SECONDS)
        info = {**client.info("memory"), **client.info("persistence")}
    except redis.RedisError:
        return []
    problems = broker_problems(info)
    if problems:
        logger.warning(
            "broker: %s (see docs/guarantees.md: use appendonly yes and maxmemory-policy noeviction)",
            "; ".join(problems),
        )
    return problems


def cluster_refusal(info: Mapping[str, Any]) -> str | None:
    """The one line that refuses a broker, from its ``INFO cluster``; None when it is no cluster."""
    return CLUSTER_REFUSAL if str(info.get("cluster_enabled", "0")) == "1" else None


def refuse_cluster(celery_app: Celery) -> str | None:
    """The refusal line when the broker is a Redis Cluster node; None otherwise or when unreachable."""
    try:
        info = broker_redis(celery_app, socket_timeout=CHECK_TIMEOUT_SECONDS).info("cluster")
    except redis.RedisError:
        return None
    return cluster_refusal(info)
