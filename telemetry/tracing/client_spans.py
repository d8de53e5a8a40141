"""Database and Redis client spans in the processes that run tasks.

    spans = ClientSpans(provider, extensions)
    spans.instrument()      # once per process that runs tasks
    spans.uninstrument()    # what instrument() instrumented, and only that

Installed lazily, so a process that never touches the database never imports
SQLAlchemy, asyncpg or their instrumentors:

* the SQLAlchemy and asyncpg instrumentors are installed through the app's
  ``Extensions.before_first_engine`` hook (the jobpilot DB bridge runs it just
  before it builds the process's first engine); every engine built after it is
  traced, and its spans join the task's ``run`` span across ``asyncio.run()``
  (the new loop's tasks copy the current context);
* Redis spans cover only the clients the app hands to
  ``Extensions.on_task_redis_client`` (the jobpilot pub/sub publisher), via
  ``RedisInstrumentor.instrument_client``; kombu's traffic, the result backend,
  the readiness probes and the depth poller are not traced.

An instrumentor the app had instrumented itself (``is_instrumented_by_opentelemetry``),
or a client it had instrumented, is left alone, and so ``uninstrument`` leaves
it instrumented. A hook that fires after ``uninstrument`` does nothing.
Statement parameters are never recorded (the instrumentors' default). The
database instrumentors come with the ``sqlalchemy`` extra
(``pip install 'jobpilot-telemetry[sqlalchemy]'``); without it, a worker whose
app passes ``before_first_engine`` says so once and records no database spans.
"""

from __future__ import annotations

import logging
import weakref
from importlib.util import find_spec
from typing import Any, Protocol

from opentelemetry.trace import TracerProvider

from telemetry.extensions import Extensions

logger = logging.getLogger("telemetry.tracing.client_spans")

#: The flag ``RedisInstrumentor.instrument_client`` sets on a client it instrumented.
CLIENT_INSTRUMENTED = "_is_instrumented_by_opentelemetry"
#: The modules of the ``sqlalchemy`` extra.
DATABASE_INSTRUMENTORS = (
    "opentelemetry.instrumentation.sqlalchemy",
    "opentelemetry.instrumentation.asyncpg",
)


class Instrumentor(Protocol):
    """What is kept of an OpenTelemetry ``BaseInstrumentor`` to undo it."""

    def uninstrument(self, **kwargs: Any) -> None: ...


class ClientSpans:
    """The client spans of one process that runs tasks."""

    def __init__(self, provider: TracerProvider, extensions: Extensions) -> None:
        self.provider = provider
        self.extensions = extensions
        self.active = False
        #: Instrumentors and clients instrumented here, to uninstrument.
        self.instrumentors: list[Instrumentor] = []
        self.clients: weakref.WeakSet[Any] = weakref.WeakSet()

    def instrument(self) -> None:
        """Register the lazy installers with the app's hooks."""
        self.active = True
        if self.extensions.before_first_engine is not None:
            missing = [name for name in DATABASE_INSTRUMENTORS if find_spec(name) is None]
            if missing:
                logger.warning(
                    "telemetry: no database spans: %s is not installed "
                    "(pip install 'jobpilot-telemetry[sqlalchemy]')",
                    missing[0],
                )
            else:
                self.extensions.before_first_engine(self._instrument_database)
        if self.extensions.on_task_redis_client is not None:
            self.extensions.on_task_redis_client(self._instrument_redis_client)

    def uninstrument(self) -> None:
        self.active = False
        for instrumentor in reversed(self.instrumentors):
            instrumentor.uninstrument()
        self.instrumentors.clear()
        if self.clients:
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            for client in list(self.clients):
                RedisInstrumentor.uninstrument_client(client)
                # uninstrument_client unwraps the client and leaves its flag set, which
                # would make the next instrument_client of it refuse: put it back too.
                setattr(client, CLIENT_INSTRUMENTED, False)
            self.clients.clear()

    def _instrument_database(self) -> None:
        if not self.active:
            return
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # The SQLAlchemy instrumentor declares support below 2.1 only; the event
        # hooks it uses are unchanged in 2.1, and tests/telemetry/tracing/test_client_spans.py
        # proves the spans against the installed version.
        sqlalchemy = SQLAlchemyInstrumentor()
        if not sqlalchemy.is_instrumented_by_opentelemetry:
            sqlalchemy.instrument(tracer_provider=self.provider, skip_dep_check=True)
            self.instrumentors.append(sqlalchemy)
        asyncpg = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
        if not asyncpg.is_instrumented_by_opentelemetry:
            asyncpg.instrument(tracer_provider=self.provider)
            self.instrumentors.append(asyncpg)

    def _instrument_redis_client(self, client: Any) -> None:
        if not self.active:
            return
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        if RedisInstrumentor().is_instrumented_by_opentelemetry or getattr(
            client, CLIENT_INSTRUMENTED, False
        ):
            return  # every client, or this one, already traced by the app's own choice
        RedisInstrumentor.instrument_client(client, tracer_provider=self.provider)
        self.clients.add(client)
