"""Database and Redis client spans in the processes that run tasks.

Installed lazily, once per process, so a process that never touches the
database never imports SQLAlchemy, asyncpg or their instrumentors:

* the SQLAlchemy and asyncpg instrumentors are installed through the app's
  ``Extensions.before_first_engine`` hook (the jobpilot DB bridge runs it just
  before it builds the process's first engine); every engine built after it is
  traced, and its spans join the task's ``run`` span across ``asyncio.run()``
  (the new loop's tasks copy the current context);
* Redis spans cover only the clients the app hands to
  ``Extensions.on_task_redis_client`` (the jobpilot pub/sub publisher), via
  ``RedisInstrumentor.instrument_client``; kombu's traffic, the result backend,
  the readiness probes and the depth poller are not traced.

Statement parameters are never recorded (the instrumentors' default). The
database instrumentors come with the ``sqlalchemy`` extra
(``pip install 'jobpilot-telemetry[sqlalchemy]'``); without it, a worker whose
app passes ``before_first_engine`` says so once and records no database spans.
"""

from __future__ import annotations

import logging
from importlib.util import find_spec
from typing import Any

from opentelemetry.trace import TracerProvider

from telemetry.extensions import Extensions

logger = logging.getLogger("telemetry.tracing.client_spans")

#: The modules of the ``sqlalchemy`` extra.
DATABASE_INSTRUMENTORS = (
    "opentelemetry.instrumentation.sqlalchemy",
    "opentelemetry.instrumentation.asyncpg",
)

_installed_for: list[TracerProvider] = []


def install_client_spans(provider: TracerProvider, extensions: Extensions) -> None:
    """Register the lazy installers for this process; a second call is a no-op."""
    if _installed_for:
        return
    _installed_for.append(provider)
    if extensions.before_first_engine is not None:
        missing = [name for name in DATABASE_INSTRUMENTORS if find_spec(name) is None]
        if missing:
            logger.warning(
                "telemetry: no database spans: %s is not installed "
                "(pip install 'jobpilot-telemetry[sqlalchemy]')",
                missing[0],
            )
        else:
            extensions.before_first_engine(lambda: _instrument_database(provider))
    if extensions.on_task_redis_client is not None:
        extensions.on_task_redis_client(lambda client: _instrument_redis_client(client, provider))


def _instrument_database(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The SQLAlchemy instrumentor declares support below 2.1 only; the event
    # hooks it uses are unchanged in 2.1, and tests/telemetry/test_client_spans.py
    # proves the spans against the installed version.
    SQLAlchemyInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]


def _instrument_redis_client(client: Any, provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor.instrument_client(client, tracer_provider=provider)
