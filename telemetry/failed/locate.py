"""Where an app's failed work lives: each kind's store, from the broker connection and the settings.

    stores = stores_for_app(app, settings)     # {Kind.DEAD_LETTER: FailedStore, Kind.EXHAUSTED: ...}

Both kinds live on the app's broker, under its ``global_keyprefix``:
``<prefix>jobpilot:deadletter`` and ``<prefix>jobpilot:exhausted``
(``telemetry.failed.store`` names the keys under each). Clients are plain
redis-py clients of the broker (``telemetry.broker.redis_for``), behind
Sentinel too.

Caps come from the settings: ``EXHAUSTED_*`` for the exhausted set, and
``DEADLETTER_MAX``, ``DEADLETTER_MAX_BYTES`` and ``DEADLETTER_TTL`` for the dead
letters, which the dead-lettering channel and Request get through the poison
policy (``telemetry.deadletters.policy``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
from celery import Celery
from kombu.connection import Connection

from telemetry.broker import redis_for
from telemetry.deadletters.policy import PoisonPolicy
from telemetry.deadletters.records import DEADLETTER_KEY
from telemetry.failed.records import Kind
from telemetry.failed.store import Caps, FailedStore, StoreKeys
from telemetry.settings import TelemetrySettings

EXHAUSTED_KEY = "jobpilot:exhausted"
BASES = {Kind.DEAD_LETTER: DEADLETTER_KEY, Kind.EXHAUSTED: EXHAUSTED_KEY}


def key_prefix(transport_options: Mapping[str, Any]) -> str:
    return str(transport_options.get("global_keyprefix", "") or "")


def base_key(kind: Kind, transport_options: Mapping[str, Any]) -> str:
    return key_prefix(transport_options) + BASES[kind]


def deadletter_caps(policy: PoisonPolicy | TelemetrySettings) -> Caps:
    return Caps(policy.deadletter_max, policy.deadletter_max_bytes, policy.deadletter_ttl)


def exhausted_caps(settings: TelemetrySettings) -> Caps:
    return Caps(settings.exhausted_max, settings.exhausted_max_bytes, settings.exhausted_ttl)


def deadletter_store(
    connection: Connection, policy: PoisonPolicy, client: redis.Redis | None = None
) -> FailedStore:
    """The dead letters of the broker ``connection`` points at, capped as ``policy`` says."""
    options: Mapping[str, Any] = connection.transport_options or {}
    return FailedStore(
        client if client is not None else redis_for(connection),
        StoreKeys.of(base_key(Kind.DEAD_LETTER, options)),
        deadletter_caps(policy),
    )


def stores_for(
    connection: Connection, settings: TelemetrySettings, client: redis.Redis | None = None
) -> dict[str, FailedStore]:
    """Both kinds' stores on one client."""
    options: Mapping[str, Any] = connection.transport_options or {}
    client = client if client is not None else redis_for(connection)
    return {
        Kind.DEAD_LETTER: FailedStore(
            client, StoreKeys.of(base_key(Kind.DEAD_LETTER, options)), deadletter_caps(settings)
        ),
        Kind.EXHAUSTED: FailedStore(
            client, StoreKeys.of(base_key(Kind.EXHAUSTED, options)), exhausted_caps(settings)
        ),
    }


def stores_for_app(
    app: Celery, settings: TelemetrySettings, client: redis.Redis | None = None
) -> dict[str, FailedStore]:
    with app.connection_for_read() as connection:
        return stores_for(connection, settings, client)


def polled_stores(
    app: Celery,
    settings: TelemetrySettings,
    deadletter_base: str | None,
    exhausted: bool,
    client: redis.Redis | None = None,
) -> dict[str, FailedStore]:
    """The sets a size poll keeps, by kind: the dead letters under ``deadletter_base`` (the
    key ``telemetry.Extensions.deadletter_key`` names; None: the app keeps none) and,
    with ``exhausted``, the exhausted set."""
    with app.connection_for_read() as connection:
        options: Mapping[str, Any] = connection.transport_options or {}
        client = client if client is not None else redis_for(connection)
    polled: dict[str, FailedStore] = {}
    if deadletter_base is not None:
        polled[Kind.DEAD_LETTER] = FailedStore(
            client, StoreKeys.of(deadletter_base), deadletter_caps(settings)
        )
    if exhausted:
        polled[Kind.EXHAUSTED] = FailedStore(
            client, StoreKeys.of(base_key(Kind.EXHAUSTED, options)), exhausted_caps(settings)
        )
    return polled
