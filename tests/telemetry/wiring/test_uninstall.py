"""``uninstall(app)`` leaves the app, Celery's signals and kombu as stock Celery left them.

A real worker runs in a subprocess whose state this process cannot read, so the
worker's side of the install is driven here, through the receivers a worker
fires (``celeryd_init``, ``worker_init``, ``worker_ready``, ``worker_shutting_down``,
``worker_shutdown``), with minimal senders, against the real Redis: the
telemetry binds a real port, starts real threads and runs its real checks.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis
from celery import Celery, signals
from celery.app.trace import build_tracer
from celery.utils.dispatch.signal import Signal
from celery.worker.request import Request
from kombu import transport as kombu_transport
from opentelemetry import trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

import telemetry
from telemetry.deadletters.request import DeadLetteringRequest
from telemetry.delivery.observers import OBSERVERS
from telemetry.delivery.request import TelemetryRequest
from telemetry.messages import HEALTH_TASK
from telemetry.wiring.producer import PUBLISH_HOOKS
from tests.conftest import redis_url
from tests.support.worker_process import free_port, wait_until

HOSTNAME = "stock@uninstall"
#: Fast enough that every thread the worker starts runs and stops within the test.
FAST = {"READINESS_INTERVAL": "0.2", "QUEUE_POLL_INTERVAL": "0.2", "OTEL_TRACES_EXPORTER": "none"}
#: A task that had no Request of its own reads its class's again.
INHERITED = "inherited"
CLIENT_INSTRUMENTED = "_is_instrumented_by_opentelemetry"


class AppRequest(Request):  # type: ignore[misc]
    """A Request class an app chose for one of its tasks."""


def stock_app() -> Celery:
    """An app as a team writes it: tasks with Celery's Request, its own, and one set on the task."""
    app = Celery("stock", broker=redis_url(), set_as_current=False)
    _apps.append(app)

    @app.task(name="stock.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="stock.own_class", shared=False, Request=f"{__name__}:AppRequest")
    def own_class() -> None:
        return None

    @app.task(name="stock.own_instance", shared=False)
    def own_instance() -> None:
        return None

    own_instance.Request = AppRequest
    for name, task in app.tasks.items():  # as a worker's consumer builds them
        task.__trace__ = build_tracer(name, task, app=app, hostname=HOSTNAME)
    return app


def receivers_of(signal: Signal) -> list[tuple[object, object]]:
    """Each receiver's lookup key and the receiver itself, however it is held."""
    resolved = []
    for key, receiver in signal.receivers:
        if isinstance(receiver, weakref.ReferenceType):
            receiver = receiver()
        resolved.append((key, receiver))
    return resolved


def state(app: Celery) -> dict[str, object]:
    """Everything install, a worker and uninstall touch, as plain values."""
    return {
        "signals": {
            name: receivers_of(signal)
            for name in signals.__all__
            if isinstance(signal := getattr(signals, name), Signal)
        },
        "kombu aliases": dict(kombu_transport.TRANSPORT_ALIASES),
        "kombu transport cache": dict(kombu_transport._transport_cache),
        "task Requests": {
            name: (vars(task).get("Request", INHERITED), task.Request)
            for name, task in app.tasks.items()
        },
        "task tracers": {name: task.__trace__ for name, task in app.tasks.items()},
        "app conf": dict(app.conf.changes),
        "delivery observers": list(OBSERVERS),
        "publish hooks": (
            list(PUBLISH_HOOKS.apps),
            PUBLISH_HOOKS.recorder,
            PUBLISH_HOOKS.spans,
            PUBLISH_HOOKS.configured,
        ),
        "instrumentors": {
            type(each).__name__: each.is_instrumented_by_opentelemetry
            for each in (SQLAlchemyInstrumentor(), AsyncPGInstrumentor(), RedisInstrumentor())  # type: ignore[no-untyped-call]
        },
        "threads": threads(),
    }


def threads() -> list[str]:
    return sorted(thread.name for thread in threading.enumerate())


def traced(client: redis.Redis) -> bool:
    """Whether the client's commands go through the Redis instrumentation's wrapper."""
    return hasattr(client.execute_command, "__wrapped__")


def assert_restored(app: Celery, before: dict[str, object]) -> None:
    """Once the threads a worker started have ended, everything is as it was."""
    wait_until(lambda: threads() == before["threads"], 5, message="the worker's threads to end")
    assert state(app) == before


_apps: list[Celery] = []


@pytest.fixture(autouse=True)
def _uninstalled() -> Iterator[None]:
    """A test that fails half-way leaves no app installed for the next one."""
    yield
    while _apps:
        telemetry.uninstall(_apps.pop())


@pytest.fixture
def otel_globals() -> Iterator[None]:
    """A solo worker sets the global tracer provider, which OpenTelemetry allows once a
    process and never takes back; the test process gets its own back afterwards."""
    provider, done = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done
    yield
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done = provider, done


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis) -> None:
    """The worker's variables, and a flushed Redis for the health checks it publishes."""
    for name, value in {**FAST, "METRICS_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)


class Sender:
    """Celery's worker, or its consumer, as little of it as the signals' receivers read."""

    def __init__(self, app: Celery, pool_cls: str | None = None) -> None:
        self.app = app
        self.hostname = HOSTNAME
        self.pool_cls = pool_cls
        self.consumer_cls = "celery.worker.consumer:Consumer"
        self.pool = None


def start_worker(app: Celery, pool: str) -> Sender:
    """What Celery's worker sends, up to worker_ready; the worker as its sender."""
    worker = Sender(app, pool)
    signals.celeryd_init.send(sender=HOSTNAME, instance=worker, conf=app.conf, options={})
    signals.worker_init.send(sender=worker)
    signals.worker_ready.send(sender=Sender(app))
    return worker


@pytest.mark.usefixtures("worker_env", "otel_globals")
@pytest.mark.parametrize("pool", ["prefork", "solo"])
@pytest.mark.parametrize("shutdown", [True, False], ids=["after shutdown", "while running"])
def test_uninstall_leaves_the_app_as_stock_celery_left_it(pool: str, shutdown: bool) -> None:
    # Given a stock app, and everything install and a worker could change, as it is
    app = stock_app()
    before = state(app)
    # When the telemetry is installed, keeping failed work, and a worker of the app starts
    telemetry.install(app, exhausted=True)
    worker = start_worker(app, pool)
    # Then the worker runs with it: every change the comparison below must see is made
    during = state(app)
    assert app.conf.worker_direct is True
    assert HEALTH_TASK in app.tasks
    for task in app.tasks.values():
        assert issubclass(task.Request, TelemetryRequest)
        assert issubclass(task.Request, DeadLetteringRequest)
    assert issubclass(app.tasks["stock.own_class"].Request, AppRequest)
    assert during["signals"] != before["signals"]
    assert during["kombu aliases"] != before["kombu aliases"]
    assert during["delivery observers"] and during["publish hooks"] != before["publish hooks"]
    assert {"telemetry-http", "readiness-broker", "exhausted-writer"} <= set(during["threads"])  # type: ignore[call-overload]
    # (run spans wrap each task's tracer in the process that runs tasks: here for solo)
    before_tracers = cast("dict[str, object]", before["task tracers"])
    during_tracers = cast("dict[str, object]", during["task tracers"])
    changed = {
        name for name, tracer in before_tracers.items() if during_tracers[name] is not tracer
    }
    assert changed == (set(before_tracers) if pool == "solo" else set())
    # When the worker shuts down (or not), and the telemetry is uninstalled
    if shutdown:
        signals.worker_shutting_down.send(sender=HOSTNAME, sig="SIGTERM", how="Warm", exitcode=0)
        signals.worker_shutdown.send(sender=worker)
    telemetry.uninstall(app)
    # Then every thread it started ends, and nothing else is left
    assert_restored(app, before)
    assert HEALTH_TASK not in app.tasks and app.conf.worker_direct is False
    assert app.tasks["stock.own_instance"].Request is AppRequest
    assert "Request" not in vars(app.tasks["stock.add"])


@pytest.mark.usefixtures("worker_env")
def test_what_the_app_had_chosen_is_left_in_place() -> None:
    """Given an app that turned worker_direct on and has a task of the health task's name."""
    app = stock_app()
    app.conf.worker_direct = True

    @app.task(name=HEALTH_TASK, bind=True, shared=False)
    def own_health_check(task: Any) -> None:
        return None

    before, own = state(app), app.tasks[HEALTH_TASK]
    telemetry.install(app)
    start_worker(app, "prefork")
    assert app.tasks[HEALTH_TASK] is own
    telemetry.uninstall(app)
    assert_restored(app, before)
    assert app.tasks[HEALTH_TASK] is own and app.conf.worker_direct is True


@pytest.mark.usefixtures("worker_env")
def test_a_worker_with_the_telemetry_off_is_poison_safe_only_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TELEMETRY_ENABLED", "false")
    app = stock_app()
    before = state(app)
    telemetry.install(app)
    worker = start_worker(app, "prefork")
    assert all(issubclass(task.Request, DeadLetteringRequest) for task in app.tasks.values())
    assert not any(issubclass(task.Request, TelemetryRequest) for task in app.tasks.values())
    assert HEALTH_TASK not in app.tasks and not list(OBSERVERS)
    assert threads() == before["threads"]
    signals.worker_shutdown.send(sender=worker)
    telemetry.uninstall(app)
    assert state(app) == before


@pytest.mark.usefixtures("worker_env", "otel_globals")
def test_uninstall_takes_back_the_instrumentors_it_instrumented_only() -> None:
    """Given the app traces asyncpg and one Redis client itself, when a solo worker instruments
    the clients its tasks use and the telemetry is uninstalled, then what the app
    instrumented stays instrumented and what the telemetry instrumented is not any more."""
    before_engine: list[Callable[[], None]] = []
    on_client: list[Callable[[Any], None]] = []
    extensions = telemetry.Extensions(
        before_first_engine=before_engine.append, on_task_redis_client=on_client.append
    )
    apps_client, tasks_client = redis.Redis.from_url(redis_url()), redis.Redis.from_url(redis_url())
    asyncpg = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    asyncpg.instrument()
    RedisInstrumentor.instrument_client(apps_client)
    app = stock_app()
    try:
        telemetry.install(app, extensions=extensions)
        start_worker(app, "solo")
        # The app's hooks fire as the jobpilot bridge and Redis client fire them in a task
        for hook in before_engine:
            hook()
        for hook in on_client:
            hook(tasks_client)
            hook(apps_client)
        assert SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
        assert traced(tasks_client) and traced(apps_client)
        telemetry.uninstall(app)
        assert not SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
        assert not traced(tasks_client) and not getattr(tasks_client, CLIENT_INSTRUMENTED)
        assert asyncpg.is_instrumented_by_opentelemetry
        assert traced(apps_client) and getattr(apps_client, CLIENT_INSTRUMENTED)
        # A hook that fires after uninstall (an engine built later) instruments nothing
        for hook in before_engine:
            hook()
        assert not SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
    finally:
        telemetry.uninstall(app)
        asyncpg.uninstrument()
        RedisInstrumentor.uninstrument_client(apps_client)
        for client in (apps_client, tasks_client):
            client.close()
