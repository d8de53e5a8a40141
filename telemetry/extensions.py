"""What an app adds to its worker's telemetry, handed over as values and callables.

    telemetry.install(app, extensions=lambda: Extensions(deadletter_key="dead_letters"))

Everything is optional; an app without extensions gets the task metrics,
readiness (broker and health task), depth and age, and traces. ``install``
takes the extensions, or a function returning them, which is called once,
when the worker starts, so an app may build them from settings it reads late.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Extensions:
    #: The dead letters' base key, with any key prefix (``telemetry.failed.store``
    #: names the keys under it): its size is ``celery_deadletter_size``, kept and read
    #: in the same poll as the queue depths.
    deadletter_key: str | None = None
    #: A database round trip (``SELECT 1`` on a fresh connection) for the readiness
    #: check ``database``; without it the worker has no such check.
    select_one: Callable[[], Awaitable[object]] | None = None
    #: Registers a hook to run once before the process builds its first database
    #: engine: tracing installs the SQLAlchemy and asyncpg instrumentors there.
    before_first_engine: Callable[[Callable[[], None]], None] | None = None
    #: Registers a hook called with every Redis client tasks build: tracing
    #: instruments those clients, and leaves kombu's traffic untraced.
    on_task_redis_client: Callable[[Callable[[Any], None]], None] | None = None


#: The extensions, or a function that returns them when the worker starts.
ExtensionsSource = Extensions | Callable[[], Extensions]


def resolve(source: ExtensionsSource | None) -> Extensions:
    if source is None:
        return Extensions()
    return source if isinstance(source, Extensions) else source()
