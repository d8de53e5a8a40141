"""Poison safety's steps on their own (no worker process): what each changes and puts back."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery, Task
from celery.worker.consumer import Consumer
from celery.worker.request import Request
from kombu import transport as kombu_transport

import telemetry
from telemetry import transport
from telemetry.deadletters.consumer import DeadLetteringConsumer
from telemetry.deadletters.policy import PoisonPolicy
from telemetry.deadletters.request import DeadLetteringRequest, Undeliverable
from telemetry.deadletters.safety import PoisonSafety, PoisonTransport, combined_consumer
from telemetry.deadletters.writer import DeadLetterWriter
from telemetry.settings import ConfigError, TelemetrySettings
from telemetry.transport.channel import SentinelTransport, Transport
from tests.conftest import redis_url

STOCK_CONSUMER = "celery.worker.consumer:Consumer"


@pytest.fixture(autouse=True)
def _kombu_tables() -> Iterator[None]:
    """Nothing registered when a test starts; kombu's tables as they were after it."""
    assert not transport.registered()
    aliases = dict(kombu_transport.TRANSPORT_ALIASES)
    cache = dict(kombu_transport._transport_cache)
    yield
    kombu_transport.TRANSPORT_ALIASES.clear()
    kombu_transport.TRANSPORT_ALIASES.update(aliases)
    kombu_transport._transport_cache.clear()
    kombu_transport._transport_cache.update(cache)


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("safety", broker=redis_url(), set_as_current=False)
    app.conf.accept_content = ["json", "msgpack"]
    yield app
    telemetry.uninstall(app)


@pytest.fixture
def writer(app: Celery) -> DeadLetterWriter:
    return DeadLetterWriter.for_app(app)


POLICY = PoisonPolicy.of(["json"], TelemetrySettings())


class TeamConsumer(Consumer):  # type: ignore[misc]
    def connect(self) -> Any:
        return super().connect()


class OwnHandlerConsumer(Consumer):  # type: ignore[misc]
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        return None


class AlreadyOurs(DeadLetteringConsumer):
    pass


class NotAConsumer:
    pass


def test_the_stock_consumer_and_a_subclass_of_it_are_combined_with_ours(
    writer: DeadLetterWriter,
) -> None:
    stock = combined_consumer(STOCK_CONSUMER, POLICY, writer)
    assert stock.__mro__[1:3] == (DeadLetteringConsumer, Consumer)
    assert stock.poison_policy is POLICY and stock.dead_letters is writer
    team = combined_consumer(TeamConsumer, POLICY, writer)
    assert team.__mro__[1:4] == (DeadLetteringConsumer, TeamConsumer, Consumer)
    ours = combined_consumer(AlreadyOurs, POLICY, writer)
    assert ours.__mro__[1] is AlreadyOurs and ours.poison_policy is POLICY


def test_a_consumer_that_cannot_be_combined_is_one_settings_line(
    writer: DeadLetterWriter,
) -> None:
    with pytest.raises(ConfigError) as not_celery:
        combined_consumer(f"{__name__}:NotAConsumer", POLICY, writer)
    assert str(not_celery.value).startswith(
        f"settings: worker_consumer: {__name__}:NotAConsumer is not a subclass of "
        "celery.worker.consumer.Consumer"
    )
    with pytest.raises(ConfigError) as overrides:
        combined_consumer(OwnHandlerConsumer, POLICY, writer)
    assert "OwnHandlerConsumer overrides on_decode_error" in str(overrides.value)
    with pytest.raises(ConfigError) as missing:
        combined_consumer("no_such_module:Consumer", POLICY, writer)
    assert str(missing.value).startswith(
        "settings: worker_consumer: no_such_module:Consumer cannot be imported"
    )
    assert "\n" not in str(not_celery.value) + str(overrides.value) + str(missing.value)


def test_the_transport_is_registered_for_the_process_and_kombus_entries_come_back() -> None:
    # Given kombu's tables, with `sentinel` never resolved yet
    kombu_transport._transport_cache.pop("sentinel", None)
    aliases = dict(kombu_transport.TRANSPORT_ALIASES)
    cache = dict(kombu_transport._transport_cache)
    first, second = object(), object()
    # When two holders register and the first lets go
    transport.register(first)
    transport.register(second)
    transport.unregister(first)
    # Then ours is still resolved for every scheme
    assert kombu_transport.get_transport_cls("rediss") is Transport
    assert kombu_transport._transport_cache["sentinel"] is SentinelTransport
    # When the last one lets go, kombu's tables are as they were
    transport.unregister(second)
    assert aliases == kombu_transport.TRANSPORT_ALIASES
    assert kombu_transport._transport_cache == cache
    assert not transport.registered()


def test_install_registers_the_transport_unless_poison_safety_is_off(app: Celery) -> None:
    other = Celery("other", broker=redis_url(), set_as_current=False)
    telemetry.install(other, poison_safety=False)
    try:
        assert not transport.registered()
        telemetry.install(app)
        assert transport.registered()
        telemetry.uninstall(app)
        assert not transport.registered()
    finally:
        telemetry.uninstall(other)


def test_start_makes_the_worker_poison_safe_and_stop_restores_each_request(
    app: Celery,
) -> None:
    # Given an app with a task of its own Request class, and one left at the default
    class TeamRequest(Request):  # type: ignore[misc]
        pass

    @app.task(name="plain")
    def plain() -> None: ...

    @app.task(name="custom", shared=False)
    def custom() -> None: ...

    app.tasks["custom"].Request = TeamRequest
    tasks = {name: app.tasks[name] for name in ("plain", "custom")}
    worker = SimpleNamespace(app=app, consumer_cls=STOCK_CONSUMER)
    held = PoisonTransport()
    held.install(app)
    safety = PoisonSafety(TelemetrySettings(worker_lost_retry_delay=4, deadletter_max=7))
    # When its worker starts
    safety.start(worker)
    # Then the consumer is ours on top of Celery's, judging by the app's accept_content
    assert issubclass(worker.consumer_cls, DeadLetteringConsumer)
    policy = worker.consumer_cls.poison_policy
    assert policy.accept == {"application/json", "application/x-msgpack"}
    assert policy.deadletter_max == 7
    # And each task's Request dead-letters, on top of its own class
    for task in tasks.values():
        assert issubclass(task.Request, DeadLetteringRequest)
        assert task.Request.worker_lost_retry_delay == 4
        assert task.Request.dead_letters is worker.consumer_cls.dead_letters
    assert issubclass(tasks["custom"].Request, TeamRequest)
    # When the worker stops and the app is uninstalled
    safety.stop()
    held.uninstall(app)
    # Then each task has exactly the Request it had, and the transport is let go
    assert "Request" not in vars(tasks["plain"]) and tasks["plain"].Request == Task.Request
    assert tasks["custom"].Request is TeamRequest
    assert not transport.registered()


def test_a_serializer_kombu_lacks_is_one_settings_line(app: Celery) -> None:
    app.conf.accept_content = ["json", "no-such-serializer"]
    worker = SimpleNamespace(app=app, consumer_cls=STOCK_CONSUMER)
    with pytest.raises(SystemExit) as refused:
        PoisonSafety(TelemetrySettings()).start(worker)
    assert str(refused.value).startswith("settings: accept_content: ")


def test_a_body_that_is_not_the_task_triple_builds_no_request() -> None:
    for body in ([1, 2], [[1], {}, 3], [[1], {1: 2}, None], {"args": []}, b"raw"):
        with pytest.raises(Undeliverable) as refused:
            DeadLetteringRequest(SimpleNamespace(payload=body))
        assert refused.value.reason == "bad_body"
