"""Our kombu transport: a Redis channel that validates what it pops (``channel``).

    from telemetry import transport
    transport.register()      # every kombu Connection of this process, for redis://,
                              # rediss://, unix:// and sentinel:// URLs, uses it

Registered in kombu's alias table and in its resolved-class cache, so a
connection that ``Connection.switch()`` re-derives from the next URL of a
failover list uses it too, and the app's URL keeps its real scheme.
"""

from __future__ import annotations

from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis

from telemetry.transport.channel import SentinelTransport, Transport

#: The URL schemes whose connections use these transports.
SCHEMES: dict[str, type[kombu_redis.Transport]] = {
    "redis": Transport,
    "rediss": Transport,
    "unix": Transport,
    "sentinel": SentinelTransport,
}


def register() -> None:
    """Resolve :data:`SCHEMES` to these transports in kombu; idempotent.

    Both the alias table (names resolved later) and kombu's resolved-class cache
    (names resolved already, which the alias table alone would not change).
    """
    for scheme, transport_class in SCHEMES.items():
        kombu_transport.TRANSPORT_ALIASES[scheme] = (
            f"{transport_class.__module__}:{transport_class.__name__}"
        )
        kombu_transport._transport_cache[scheme] = transport_class
