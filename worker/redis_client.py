"""Redis clients of our own (dead letters, probes, depth poller, pub/sub).

They all connect where the app's resolved ``broker_url`` points, with the same
TLS options, and never through kombu's prefixed client: key prefixes are applied
explicitly by the callers, because kombu's client does not prefix every command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from kombu.connection import Connection
from redis.backoff import NoBackoff
from redis.retry import Retry

#: Our own clients never wait long: a dead broker must not stall the caller.
SOCKET_TIMEOUT_SECONDS = 5.0

_task_client_hooks: list[Callable[[redis.Redis], None]] = []


def redis_for(
    connection: Connection, *, socket_timeout: float = SOCKET_TIMEOUT_SECONDS
) -> redis.Redis:
    """A plain redis-py client for the broker a kombu ``Connection`` points at.

    Built from the parsed parts rather than a URL, because the connection's
    transport is our dead-letter subclass and ``as_uri`` would name it.
    """
    kwargs: dict[str, Any] = {
        # No hidden retries with backoff (redis-py's default): a probe must see a
        # dead broker within its timeout, and each caller has its own retry policy.
        "retry": Retry(NoBackoff(), 0),
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "username": connection.userid or None,
        "password": connection.password or None,
    }
    if (connection.hostname or "").startswith("/"):
        return redis.Redis(unix_socket_path=connection.hostname, **kwargs)
    vhost = str(connection.virtual_host or "0").strip("/") or "0"
    kwargs.update(
        host=connection.hostname or "localhost", port=connection.port or 6379, db=int(vhost)
    )
    if connection.ssl:
        kwargs["ssl"] = True
        if isinstance(connection.ssl, dict):
            kwargs.update(connection.ssl)
    return redis.Redis(**kwargs)


def broker_redis(
    celery_app: Celery, *, socket_timeout: float = SOCKET_TIMEOUT_SECONDS
) -> redis.Redis:
    """A client for the app's resolved broker."""
    with celery_app.connection_for_read() as connection:
        return redis_for(connection, socket_timeout=socket_timeout)


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
