"""Our plain Redis clients connect where kombu's connection points, behind Sentinel too."""

from __future__ import annotations

import redis
from kombu import Connection
from redis.sentinel import SentinelConnectionPool

import worker  # noqa: F401  (registers the transports, as a worker process has)
from telemetry.broker import reached, redis_for


def test_a_sentinel_connection_gives_a_client_of_the_master_the_sentinels_name() -> None:
    # Given kombu's connection for a sentinel list, with both passwords
    connection = Connection(
        "sentinel://:master-pw@10.0.0.1:26379/3;sentinel://10.0.0.2/3;sentinel://10.0.0.3:26390/3",
        transport_options={"master_name": "jobpilot", "sentinel_kwargs": {"password": "s-pw"}},
    )
    # When our client is built from it
    client = redis_for(connection, socket_timeout=0.5)
    pool = client.connection_pool
    # Then it asks every sentinel of the list (26379 when a URL names no port) for "jobpilot"
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "jobpilot"
    sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
    assert [(s["host"], s["port"]) for s in sentinels] == [
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26379),
        ("10.0.0.3", 26390),
    ]
    # And the sentinels get their own password and our short timeout; the master the URL's
    assert {s["password"] for s in sentinels} == {"s-pw"}
    assert {s["socket_timeout"] for s in sentinels} == {0.5}
    assert pool.connection_kwargs["password"] == "master-pw"
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["socket_timeout"]) == (3, 0.5)
    # And before any connection it has reached nothing
    assert reached(client) == "unknown"


def test_a_plain_connection_reports_its_address() -> None:
    client = redis_for(Connection("redis://:pw@cache:6380/1"))
    assert not isinstance(client.connection_pool, SentinelConnectionPool)
    assert reached(client) == "cache:6380"
    assert reached(redis.Redis(unix_socket_path="/run/redis.sock")) == "/run/redis.sock"
