"""``python -m worker.ping``: is the broker reachable? Says how to fix it when not."""

from __future__ import annotations

import sys

import redis

from telemetry.broker import broker_redis
from worker.celery_app import app
from worker.urls import redact_url

PING_TIMEOUT_SECONDS = 2.0


def main() -> int:
    url = redact_url(app.conf.broker_url)
    try:
        broker_redis(app, socket_timeout=PING_TIMEOUT_SECONDS).ping()
    except redis.RedisError as exc:
        print(
            f"Redis is not reachable at {url} ({type(exc).__name__}). Start one with\n"
            "  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --appendonly yes\n"
            "or point REDIS_URL (or CELERY_BROKER_URL) at a running Redis.",
            file=sys.stderr,
        )
        return 1
    print(f"Redis is reachable at {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
