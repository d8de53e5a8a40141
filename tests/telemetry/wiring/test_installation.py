"""install/uninstall: per app, idempotent, symmetric, and reading nothing when called."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from celery import Celery
from celery.signals import before_task_publish, celeryd_init, worker_init
from prometheus_client import CollectorRegistry

import telemetry
from telemetry.installation import WORKER_RECEIVERS, installed
from telemetry.messages import PUBLISHED_AT_HEADER
from telemetry.wiring.producer import PublishHooks


def connected(signal: object, uid: str) -> bool:
    return any(key[0] == uid for key, _ in signal.receivers)  # type: ignore[attr-defined]


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("another", broker="memory://", set_as_current=False)
    yield app
    telemetry.uninstall(app)


def test_install_reads_no_variable_and_is_idempotent_per_app(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given unusable settings, install still succeeds: they are read at the first
    worker start or publish, not when the app module is imported."""
    monkeypatch.setenv("METRICS_PORT", "not-a-port")
    telemetry.install(app)
    first = installed(app)
    telemetry.install(app)
    assert first is not None and installed(app) is first
    assert all(connected(signal, uid) for signal, _, uid in WORKER_RECEIVERS)


def test_uninstall_is_idempotent_and_the_last_one_disconnects(app: Celery) -> None:
    other = Celery("other", broker="memory://", set_as_current=False)
    telemetry.install(app)
    telemetry.install(other)
    telemetry.uninstall(app)
    telemetry.uninstall(app)
    assert installed(app) is None
    assert connected(worker_init, "telemetry.worker_init")  # still there for the other app
    telemetry.uninstall(other)
    assert not connected(worker_init, "telemetry.worker_init")


def test_publish_hooks_connect_with_the_first_app_and_disconnect_with_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    hooks, registry = PublishHooks(), CollectorRegistry()
    first = Celery("first", broker="memory://", set_as_current=False)
    second = Celery("second", broker="memory://", set_as_current=False)
    hooks.add(first, registry)
    hooks.add(second, registry)
    uid = hooks.receivers[0][2]
    assert connected(before_task_publish, uid)
    headers: dict[str, object] = {"argsrepr": "('secret',)", "kwargsrepr": "{}"}
    hooks.on_before_task_publish(
        sender="order_ship", headers=headers, routing_key="orders", body=(("secret",), {}, {})
    )
    # Counted once in the registry both apps share; stamped; arguments scrubbed.
    assert (
        registry.get_sample_value(
            "celery_task_published_total", {"queue": "orders", "task": "order_ship"}
        )
        == 1
    )
    assert isinstance(headers[PUBLISHED_AT_HEADER], float)
    assert headers["argsrepr"] == "<1 args>"
    hooks.remove(first)
    assert connected(before_task_publish, uid)
    hooks.remove(second)
    assert not connected(before_task_publish, uid)


def test_a_bad_variable_turns_a_producer_off_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("METRICS_MAX_TASK_NAMES", "-3")
    hooks = PublishHooks()
    app = Celery("bad", broker="memory://", set_as_current=False)
    hooks.add(app, CollectorRegistry())
    headers: dict[str, object] = {}
    hooks.on_before_task_publish(sender="t", headers=headers, routing_key="q")
    hooks.on_before_task_publish(sender="t", headers=headers, routing_key="q")
    assert headers == {}
    errors = [r.getMessage() for r in caplog.records if r.name == "telemetry.producer"]
    assert errors == [
        "settings: METRICS_MAX_TASK_NAMES: Input should be greater than 0; no telemetry in this process"
    ]
    hooks.remove(app)


def test_the_direct_queue_is_turned_on_unless_the_app_turned_it_off(app: Celery) -> None:
    """Given one app that says nothing of worker_direct and one that set it to False, when
    their workers start (celeryd_init), then only the first gets the direct queue."""
    quiet = Celery("quiet", broker="memory://", set_as_current=False)
    app.conf.worker_direct = False
    telemetry.install(app)
    telemetry.install(quiet)
    try:
        for each in (app, quiet):
            celeryd_init.send(sender="w@h", instance=SimpleNamespace(app=each), conf=each.conf)
        assert app.conf.worker_direct is False
        assert quiet.conf.worker_direct is True
    finally:
        telemetry.uninstall(quiet)


def test_an_app_not_installed_is_left_alone() -> None:
    stranger = Celery("stranger", broker="memory://", set_as_current=False)
    celeryd_init.send(sender="w@h", instance=SimpleNamespace(app=stranger), conf=stranger.conf)
    assert stranger.conf.worker_direct is False


class Worker:
    """Celery's worker as ``worker_init`` sends it, as little of it as the receiver reads."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.hostname = "w@h"
        self.pool_cls = "prefork"
        self.consumer_cls = "celery.worker.consumer:Consumer"


def test_a_required_health_task_without_a_direct_queue_is_one_line_and_starts_nothing(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("READINESS_REQUIRED", "health_task")
    app.conf.worker_direct = False
    telemetry.install(app)
    tasks = {name: task.Request for name, task in app.tasks.items()}
    with pytest.raises(SystemExit) as refused:
        worker_init.send(sender=Worker(app))
    assert str(refused.value) == (
        "settings: READINESS_REQUIRED: health_task needs the worker's direct queue, "
        "and the app sets worker_direct=False"
    )
    installation = installed(app)
    assert installation is not None and installation.worker is None
    assert {name: task.Request for name, task in app.tasks.items()} == tasks
