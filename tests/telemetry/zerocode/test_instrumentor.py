"""The jobpilot_telemetry instrumentor in one process: what instrument changes, uninstrument
undoes; the app is installed when the process shows it; the first message is stamped too."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from celery import current_app as celery_current_app
from celery.backends.redis import RedisBackend
from celery.signals import before_task_publish, celeryd_init, import_modules
from kombu import transport as kombu_transport
from opentelemetry.instrumentation.celery import CeleryInstrumentor

from telemetry.installation import installed
from telemetry.messages import PUBLISHED_AT_HEADER
from telemetry.zerocode.configurator import TelemetryConfigurator
from telemetry.zerocode.instrumentor import TelemetryInstrumentor
from telemetry.zerocode.upstream import after_instrumentors
from tests.conftest import redis_url

SIGNALS = (import_modules, celeryd_init, before_task_publish)


def snapshot() -> tuple[object, ...]:
    """What instrument may change in the process: kombu's tables, the backend, the receivers."""
    return (
        dict(kombu_transport.TRANSPORT_ALIASES),
        dict(kombu_transport._transport_cache),
        RedisBackend.__dict__["_get_client"],
        *(tuple(signal.receivers) for signal in SIGNALS),
    )


@pytest.fixture
def instrumentor() -> Iterator[TelemetryInstrumentor]:
    before = snapshot()
    yield TelemetryInstrumentor()
    TelemetryInstrumentor().uninstrument()
    assert snapshot() == before


@pytest.fixture
def current_ledger(monkeypatch: pytest.MonkeyPatch) -> Iterator[Celery]:
    """A ledger app, current while the test runs; no tracing set up in this process."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    previous = celery_current_app._get_current_object()
    app = Celery("ledger", broker=redis_url())
    app.conf.task_default_queue = "ledger"
    yield app
    previous.set_current()


def test_import_modules_installs_the_app_and_uninstrument_uninstalls_it(
    instrumentor: TelemetryInstrumentor,
) -> None:
    """Given the instrumentor, when Celery imports an app's modules (a worker, beat), then the
    app is installed, and uninstrument leaves it, and the process, as they were."""
    app = Celery("ledger", broker=redis_url(), set_as_current=False)
    instrumentor.instrument()
    assert installed(app) is None
    import_modules.send(sender=app)
    assert installed(app) is not None
    instrumentor.uninstrument()
    assert installed(app) is None


def test_an_app_that_installed_itself_is_left_to_its_own_uninstall(
    instrumentor: TelemetryInstrumentor,
) -> None:
    import telemetry

    app = Celery("ledger", broker=redis_url(), set_as_current=False)
    telemetry.install(app)
    try:
        instrumentor.instrument()
        import_modules.send(sender=app)
        instrumentor.uninstrument()
        assert installed(app) is not None
    finally:
        telemetry.uninstall(app)


def test_the_first_publish_installs_the_current_app_and_stamps_that_message_too(
    instrumentor: TelemetryInstrumentor, current_ledger: Celery, redis_client: redis.Redis
) -> None:
    """Given a producer whose app never installed the telemetry, then its first message and
    every later one carry the publish-time header, and the first-publish receiver is gone."""
    instrumentor.instrument()
    for n in range(3):
        current_ledger.send_task("post", args=[n])
    assert installed(current_ledger) is not None
    messages = [json.loads(item) for item in redis_client.lrange("ledger", 0, -1)]
    assert len(messages) == 3
    assert all(PUBLISHED_AT_HEADER in message["headers"] for message in messages)
    connected = " ".join(str(key) for key, _ in before_task_publish.receivers)
    assert "telemetry.zerocode.first_publish" not in connected
    assert "telemetry.before_task_publish" in connected


def test_upstream_celery_is_taken_out_once_every_instrumentor_loaded_and_put_back(
    instrumentor: TelemetryInstrumentor, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = CeleryInstrumentor()
    upstream.instrument()
    try:
        instrumentor.instrument()
        after_instrumentors()
        assert not upstream.is_instrumented_by_opentelemetry
        assert [r.getMessage() for r in caplog.records] == [
            "telemetry: opentelemetry-instrumentation-celery is uninstrumented (every "
            "instrumentor has loaded): the telemetry makes each task's consumer span and "
            "each publish's producer span"
        ]
        instrumentor.uninstrument()
        assert upstream.is_instrumented_by_opentelemetry
    finally:
        upstream.uninstrument()


def test_disabled_it_leaves_upstream_celery_alone() -> None:
    upstream = CeleryInstrumentor()
    upstream.instrument()
    try:
        after_instrumentors()  # the post-instrument hook runs even when ours was left out
        assert upstream.is_instrumented_by_opentelemetry
    finally:
        upstream.uninstrument()


def test_the_distribution_declares_the_three_entry_points() -> None:
    """opentelemetry-instrument finds them in jobpilot-telemetry's metadata, and each loads."""
    declared = {
        (point.group, point.name): point
        for point in importlib.metadata.distribution("jobpilot-telemetry").entry_points
        if point.group.startswith("opentelemetry_")
    }
    assert set(declared) == {
        ("opentelemetry_instrumentor", "jobpilot_telemetry"),
        ("opentelemetry_post_instrument", "jobpilot_telemetry"),
        ("opentelemetry_configurator", "jobpilot_telemetry"),
    }
    loaded = {group: point.load() for (group, _), point in declared.items()}
    assert loaded["opentelemetry_instrumentor"] is TelemetryInstrumentor
    assert loaded["opentelemetry_post_instrument"] is after_instrumentors
    assert loaded["opentelemetry_configurator"] is TelemetryConfigurator
