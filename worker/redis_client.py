"""The Redis client tasks use (the pub/sub publisher), with a hook for client spans.

It connects where the app's resolved broker points, as every Redis client of
ours does (``telemetry.broker``).
"""

from __future__ import annotations

from collections.abc import Callable

import redis
from celery import Celery

from telemetry.broker import broker_redis

_task_client_hooks: list[Callable[[redis.Redis], None]] = []


def on_task_client(hook: Callable[[redis.Redis], None]) -> None:
    """Call ``hook(client)`` for every client ``task_redis`` builds in this process.

    Tracing uses it to instrument the clients tasks use (the pub/sub publisher),
    leaving kombu's, the probes' and the poller's traffic untraced.
    """
    _task_client_hooks.append(hook)


def task_redis(celery_app: Celery) -> redis.Redis:
    """A broker client for use inside tasks."""
    client = broker_redis(celery_app)
    for hook in _task_client_hooks:
        hook(client)
    return client
