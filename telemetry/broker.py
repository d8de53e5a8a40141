"""Plain redis-py clients for an app's broker: the depth poller and the broker check use them.

They connect where the app's resolved broker points (``app.connection_for_read()``),
with its TLS options, and never through kombu's prefixed client. Behind
``sentinel://`` URLs they connect to the master the sentinels name, asked again
on every new connection, so after a failover they follow the new master as
kombu's own connections do. Key prefixes
are applied explicitly by the callers, because kombu's client does not prefix
every command. :func:`redis_broker` tells whether there is a Redis to connect to:
on another broker the telemetry serves no depth, age or broker check. Their
commands make no client spans (``telemetry.tracing.untraced``).
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery
from kombu.connection import Connection
from kombu.transport.redis import Channel as RedisChannel
from kombu.transport.redis import SentinelTransport
from kombu.utils.url import url_to_parts
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from telemetry.tracing.untraced import untraced

#: Our own clients never wait long: a dead broker must not stall the caller.
SOCKET_TIMEOUT_SECONDS = 5.0
#: kombu's driver types that speak to a Redis server (``redis://``, ``rediss://``, ``unix://``).
REDIS_DRIVERS = frozenset({"redis"})
#: Sentinel's port when a ``sentinel://`` URL names none.
SENTINEL_PORT = 26379
#: Celery's per-worker direct queues (``worker_direct``): not the app's queues.
DIRECT_SUFFIX = ".dq2"
#: The telemetry's own clients: their polls and probes are no task's work.
UntracedRedis = untraced(redis.Redis)


def redis_for(
    connection: Connection, *, socket_timeout: float = SOCKET_TIMEOUT_SECONDS
) -> redis.Redis:
    """A plain redis-py client for the broker a kombu ``Connection`` points at.

    Built from the parsed parts rather than a URL, because the connection's
    transport may be a subclass registered by path, which ``as_uri`` would name.
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
        return UntracedRedis(unix_socket_path=connection.hostname, **kwargs)
    vhost = str(connection.virtual_host or "0").strip("/") or "0"
    kwargs["db"] = int(vhost)
    if connection.ssl:
        kwargs["ssl"] = True
        if isinstance(connection.ssl, dict):
            kwargs.update(connection.ssl)
    if isinstance(connection.transport, SentinelTransport):
        return _master_of(connection, kwargs)
    return UntracedRedis(
        host=connection.hostname or "localhost", port=connection.port or 6379, **kwargs
    )


def _master_of(connection: Connection, kwargs: dict[str, Any]) -> redis.Redis:
    """A client of the master the sentinels of ``connection``'s URLs name, as kombu's channel finds it.

    The sentinels get the same timeouts and no retries, plus ``sentinel_kwargs``
    (their own password and TLS) from the transport options.
    """
    options: dict[str, Any] = connection.transport_options or {}
    sentinels = [
        (url.hostname, url.port or SENTINEL_PORT)
        for url in map(url_to_parts, connection.alt or [connection.as_uri(include_password=True)])
        if url.scheme == "sentinel"
    ]
    timeouts = {key: kwargs[key] for key in ("retry", "socket_timeout", "socket_connect_timeout")}
    manager = Sentinel(
        sentinels,
        min_other_sentinels=int(options.get("min_other_sentinels", 0)),
        sentinel_kwargs={**timeouts, **(options.get("sentinel_kwargs") or {})},
    )
    master_name = options.get("master_name")
    if not master_name:
        raise ValueError("sentinel:// needs the 'master_name' transport option")
    client: redis.Redis = manager.master_for(master_name, redis_class=UntracedRedis, **kwargs)
    return client


def reached(client: redis.Redis) -> str:
    """``host:port`` (or the socket path) of the server ``client`` last connected to; no credentials.

    Behind Sentinel, the master it was given on its last connection.
    """
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        address = pool.master_address
        return f"{address[0]}:{address[1]}" if address else "unknown"
    params = pool.connection_kwargs
    if "path" in params:
        return str(params["path"])
    return f"{params.get('host', 'localhost')}:{params.get('port', 6379)}"


def broker_redis(
    celery_app: Celery, *, socket_timeout: float = SOCKET_TIMEOUT_SECONDS
) -> redis.Redis:
    """A client for the app's resolved broker."""
    with celery_app.connection_for_read() as connection:
        return redis_for(connection, socket_timeout=socket_timeout)


def driver_type(celery_app: Celery) -> str:
    """The kombu driver type of the app's broker: ``redis``, ``amqp``, ``sqs``, ..."""
    with celery_app.connection_for_read() as connection:
        return str(connection.transport.driver_type)


def redis_broker(celery_app: Celery) -> bool:
    """Whether the app's broker is a Redis server this module can reach."""
    return driver_type(celery_app) in REDIS_DRIVERS


def visibility_timeout(celery_app: Celery) -> float:
    """The Redis transport's visibility timeout: ``broker_transport_options``, else kombu's."""
    options = celery_app.conf.broker_transport_options or {}
    return float(options.get("visibility_timeout", RedisChannel.visibility_timeout))


def app_queues(celery_app: Celery) -> frozenset[str]:
    """The queues the app declares or the worker was told to consume, direct queues aside."""
    declared = (name for name in celery_app.amqp.queues if not str(name).endswith(DIRECT_SUFFIX))
    return frozenset(declared) | {celery_app.conf.task_default_queue}
