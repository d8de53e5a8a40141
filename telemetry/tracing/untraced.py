"""Redis clients that make no client spans: kombu's broker commands and the telemetry's own.

    client_class = untraced(redis.Redis)     # a subclass, made once per class
    client = client_class(connection_pool=pool)

``opentelemetry-instrumentation-redis``, once instrumented for the whole process
(as ``opentelemetry-instrument`` does), traces every command of every client:
kombu's reservations, acks, heartbeat ``PUBLISH`` and binding refresh
``EVALSHA``, and the telemetry's depth polls and probes, hundreds of spans a
minute that say nothing about a task. The clients made here run each command
and each pipeline under OpenTelemetry's instrumentation suppression while
``RedisInstrumentor`` is instrumented, and exactly as redis-py does otherwise.
The suppression is the context key that ``suppress_instrumentation()`` sets and
every instrumentation reads, set directly: the context manager costs about
five times as much (4.4 against 0.9 us an enter and exit here).
A task's own clients are untouched: their commands still make spans.

Who uses them: the telemetry's Redis transport (``telemetry.transport.channel``,
so every kombu connection of a process where it is registered), the
telemetry's own clients (``telemetry.broker``), and Celery's Redis result
backend while :data:`RESULT_BACKEND_CLIENTS` is held (``telemetry.install``
and the zero-code instrumentor hold it): storing, publishing and reading a
task's result is Celery's bookkeeping, not the task's work.

Cost, per command or pipeline: about 0.25 us (the check and a call frame) when
the instrumentor is inactive; with it active, a context attach and detach more,
about 0.9 us, and 1 us to give a pipeline its untraced class. A worker's main process runs two
or three per task (the reservation's bookkeeping, the ack, a restore check), a
pool process one per result stored, a producer one per publish.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

from celery import Celery
from opentelemetry import context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY

from telemetry.wiring.concern import Concern

#: Where ``RedisInstrumentor`` lives; not imported here: if nobody imported it, it is not active.
REDIS_INSTRUMENTATION = "opentelemetry.instrumentation.redis"

_Class = TypeVar("_Class", bound=type)


class _Instrumentor:
    """``RedisInstrumentor``'s one instance (a ``BaseInstrumentor`` is a singleton), once imported."""

    instance: Any = None


def redis_instrumented() -> bool:
    """Whether upstream's Redis instrumentation traces every client of this process now."""
    instrumentor = _Instrumentor.instance
    if instrumentor is None:
        module = sys.modules.get(REDIS_INSTRUMENTATION)
        if module is None:
            return False
        instrumentor = _Instrumentor.instance = module.RedisInstrumentor()
    return bool(instrumentor.is_instrumented_by_opentelemetry)


class UntracedCommands:
    """Mixed into a redis-py client class: commands and pipelines run untraced."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if not redis_instrumented():
            return super().execute_command(*args, **options)  # type: ignore[misc]
        token = context.attach(context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            return super().execute_command(*args, **options)  # type: ignore[misc]
        finally:
            context.detach(token)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = super().pipeline(*args, **kwargs)  # type: ignore[misc]
        if redis_instrumented():
            # redis-py builds the pipeline itself (its class and arguments vary by
            # release): the instance keeps its state and gains the untraced execute.
            # A pipeline lives for one batch: the instrumentor is asked when it is made.
            pipe.__class__ = _untraced_pipeline(type(pipe))
        return pipe


class UntracedPipeline:
    """Mixed into a redis-py pipeline class: ``execute`` and immediate commands run untraced."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        if not redis_instrumented():
            return super().execute(*args, **kwargs)  # type: ignore[misc]
        token = context.attach(context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            return super().execute(*args, **kwargs)  # type: ignore[misc]
        finally:
            context.detach(token)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        if not redis_instrumented():
            return super().immediate_execute_command(*args, **options)  # type: ignore[misc]
        token = context.attach(context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            return super().immediate_execute_command(*args, **options)  # type: ignore[misc]
        finally:
            context.detach(token)


_made: dict[tuple[type, type], type] = {}
_making = threading.Lock()


def _subclass(mixin: type, base: type) -> type:
    """``base`` with ``mixin`` first, made once per pair."""
    made = _made.get((mixin, base))  # every pipeline asks: no lock once made
    if made is not None:
        return made
    with _making:
        made = _made.get((mixin, base))
        if made is None:
            made = _made[(mixin, base)] = type(
                f"Untraced{base.__name__}", (mixin, base), {"__module__": __name__}
            )
        return made


def _untraced_pipeline(pipeline_class: type) -> type:
    if issubclass(pipeline_class, UntracedPipeline):
        return pipeline_class
    return _subclass(UntracedPipeline, pipeline_class)


def untraced(client_class: _Class) -> _Class:
    """``client_class`` (a redis-py client class) whose commands make no client spans."""
    if issubclass(client_class, UntracedCommands):
        return client_class
    return cast(_Class, _subclass(UntracedCommands, client_class))


def untraced_factory(factory: Any) -> Any:
    """kombu's client factory (a class, or a ``functools.partial`` of one), untraced."""
    if isinstance(factory, functools.partial):
        client_class = cast(type, factory.func)
        return functools.partial(untraced(client_class), *factory.args, **factory.keywords)
    return untraced(factory)


class ResultBackendClients:
    """Celery's Redis result backend (and its Sentinel one) builds untraced clients while held.

    ``RedisBackend._get_client`` (the client class it builds its client from) is
    wrapped at the class level by the first holder and put back by the last: a
    backend's client is built at its first use, after the app is installed.
    """

    def __init__(self) -> None:
        self._holders: set[Hashable] = set()
        self._original: Callable[[Any], Any] | None = None

    def hold(self, holder: Hashable) -> None:
        if not self._holders:
            from celery.backends.redis import RedisBackend

            original = self._original = RedisBackend.__dict__["_get_client"]

            def _get_client(backend: Any) -> Any:
                return untraced(original(backend))

            RedisBackend._get_client = _get_client
        self._holders.add(holder)

    def release(self, holder: Hashable) -> None:
        self._holders.discard(holder)
        if not self._holders and self._original is not None:
            from celery.backends.redis import RedisBackend

            RedisBackend._get_client = self._original
            self._original = None


#: The process's.
RESULT_BACKEND_CLIENTS = ResultBackendClients()


class UntracedResults(Concern):
    """One app's hold on :data:`RESULT_BACKEND_CLIENTS`, from ``install`` to ``uninstall``."""

    def install(self, app: Celery) -> None:
        RESULT_BACKEND_CLIENTS.hold(id(app))

    def uninstall(self, app: Celery) -> None:
        RESULT_BACKEND_CLIENTS.release(id(app))
