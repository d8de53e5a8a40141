"""Our kombu transport: a Redis channel that validates what it pops (``channel``).

    from telemetry import transport
    transport.register(app)      # every kombu Connection of this process, for redis://,
                                 # rediss://, unix:// and sentinel:// URLs, uses it
    transport.unregister(app)    # kombu's own entries back, once no holder is left

Registered in kombu's alias table and in its resolved-class cache, so a
connection that ``Connection.switch()`` re-derives from the next URL of a
failover list uses it too, and the app's URL keeps its real scheme. The
registration is for the whole process: kombu has one table. Only a connection
that carries a poison policy (the worker's consumer's) validates, so the
other connections of the process behave as kombu's own.

``register()`` without a holder registers for the life of the process.
"""

from __future__ import annotations

from collections.abc import Hashable, MutableMapping
from typing import Any

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

_PROCESS = "the process"
_MISSING = object()

#: Who needs the registration (an installed app, or the process itself).
_holders: set[Hashable] = set()
#: kombu's entries before ours, per scheme: (alias, cached class), _MISSING where absent.
_previous: dict[str, tuple[object, object]] = {}


def register(holder: Hashable = _PROCESS) -> None:
    """Resolve :data:`SCHEMES` to these transports in kombu, for ``holder``; idempotent.

    Both the alias table (names resolved later) and kombu's resolved-class cache
    (names resolved already, which the alias table alone would not change).
    """
    if not _holders:
        for scheme, transport_class in SCHEMES.items():
            _previous[scheme] = (
                kombu_transport.TRANSPORT_ALIASES.get(scheme, _MISSING),
                kombu_transport._transport_cache.get(scheme, _MISSING),
            )
            kombu_transport.TRANSPORT_ALIASES[scheme] = (
                f"{transport_class.__module__}:{transport_class.__name__}"
            )
            kombu_transport._transport_cache[scheme] = transport_class
    _holders.add(holder)


def unregister(holder: Hashable = _PROCESS) -> None:
    """Drop ``holder``; the last one out puts kombu's previous entries back."""
    _holders.discard(holder)
    if _holders or not _previous:
        return
    for scheme, (alias, cached) in _previous.items():
        _restore(kombu_transport.TRANSPORT_ALIASES, scheme, alias)
        _restore(kombu_transport._transport_cache, scheme, cached)
    _previous.clear()


def registered() -> bool:
    return bool(_holders)


def _restore(table: MutableMapping[Any, Any], scheme: str, value: object) -> None:
    if value is _MISSING:
        table.pop(scheme, None)
    else:
        table[scheme] = value
