"""Caches of the span hop that start over when full, instead of growing without end.

    found = cache.get(key)
    if found is None:
        found = remember(cache, key, build(key), limit)

What they hold (resources, scopes, encoded pieces, datagram heads) is cheap to
build again, and a new value per pool process or per message id would
otherwise grow them for as long as the worker runs.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store ``value`` under ``key``, emptying ``cache`` first when it holds ``limit`` entries."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
