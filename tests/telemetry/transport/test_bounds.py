"""install(app) bounds every wait on a Redis broker and result backend, where the app has not."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

import telemetry
from tests.conftest import redis_url

#: What the defaults give (BROKER_* unset).
SOCKETS = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
    "socket_keepalive": True,
    "socket_keepalive_options": {
        socket.TCP_KEEPIDLE: 30,
        socket.TCP_KEEPINTVL: 5,
        socket.TCP_KEEPCNT: 3,
        socket.TCP_USER_TIMEOUT: 45_000,
    },
}
KEYS = (
    "broker_transport_options",
    "result_backend_transport_options",
    "redis_socket_timeout",
    "redis_socket_connect_timeout",
    "redis_backend_health_check_interval",
)


def snapshot(app: Celery) -> dict[str, Any]:
    """The keys install may touch, with the layer they sit in."""
    return {key: (app.conf.get(key), [key in layer for layer in app.conf.maps]) for key in KEYS}


@pytest.fixture
def apps() -> Iterator[list[Celery]]:
    made: list[Celery] = []
    yield made
    for app in made:
        telemetry.uninstall(app)


def new_app(apps: list[Celery], **config: Any) -> Celery:
    app = Celery("bounded", set_as_current=False)
    app.add_defaults(lambda: config)  # as an app configured lazily does
    apps.append(app)
    return app


def test_an_app_that_set_nothing_gets_every_bound_and_uninstall_restores_it(
    apps: list[Celery],
) -> None:
    app = new_app(apps, broker_url=redis_url(), result_backend=redis_url())
    telemetry.install(app)
    options = app.conf.broker_transport_options
    assert {key: options[key] for key in SOCKETS} == SOCKETS
    assert options["health_check_interval"] == 10 and options["reliable_fetch"] is True
    assert app.conf.redis_socket_timeout == 5 and app.conf.redis_socket_connect_timeout == 5
    assert app.conf.redis_backend_health_check_interval == 10
    # The connections the app makes carry them: kombu's pool and Celery's backend
    with app.connection_for_write() as connection:
        kwargs = connection.default_channel.pool.connection_kwargs
        assert {key: kwargs[key] for key in SOCKETS} == SOCKETS
    assert app.backend.connparams["socket_timeout"] == 5
    assert app.backend.connparams["health_check_interval"] == 10
    # And uninstall leaves the configuration as stock Celery and the app had it
    stock = Celery("stock", set_as_current=False)
    stock.add_defaults(lambda: {"broker_url": redis_url(), "result_backend": redis_url()})
    telemetry.uninstall(app)
    assert snapshot(app) == snapshot(stock)


def test_what_the_app_set_is_kept(apps: list[Celery]) -> None:
    app = new_app(
        apps,
        broker_url=redis_url(),
        result_backend=redis_url(),
        broker_transport_options={"socket_timeout": 3, "visibility_timeout": 99},
        redis_socket_timeout=7,
    )
    telemetry.install(app)
    options = app.conf.broker_transport_options
    assert options["socket_timeout"] == 3 and options["visibility_timeout"] == 99
    assert options["socket_connect_timeout"] == 5
    assert app.conf.redis_socket_timeout == 7
    assert app.conf.redis_socket_connect_timeout == 5


def test_sentinel_clients_get_the_bounds_beside_their_own_kwargs(apps: list[Celery]) -> None:
    """redis-py stops copying the socket options to the sentinels once sentinel_kwargs
    is given, and Celery's backend always gives one."""
    sentinels = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380"
    app = new_app(
        apps,
        broker_url=sentinels,
        result_backend=sentinels,
        broker_transport_options={"master_name": "m", "sentinel_kwargs": {"password": "s"}},
        result_backend_transport_options={"master_name": "m"},
    )
    telemetry.install(app)
    for options in (app.conf.broker_transport_options, app.conf.result_backend_transport_options):
        kwargs = options["sentinel_kwargs"]
        assert {key: kwargs[key] for key in SOCKETS} == SOCKETS
    assert app.conf.broker_transport_options["sentinel_kwargs"]["password"] == "s"
    assert app.conf.broker_transport_options["master_name"] == "m"


def test_an_app_on_another_broker_is_left_alone(apps: list[Celery]) -> None:
    config = {"broker_url": "memory://", "result_backend": "cache+memory://"}
    app, stock = new_app(apps, **config), new_app([], **config)
    telemetry.install(app)
    assert snapshot(app) == snapshot(stock)
    assert app.conf.redis_socket_timeout == 120.0  # Celery's default


def test_an_app_configured_before_install_is_bounded_at_once(apps: list[Celery]) -> None:
    app = new_app(apps, broker_url=redis_url())
    app.conf.broker_url  # noqa: B018 - configures the app
    telemetry.install(app)
    assert app.conf.broker_transport_options["socket_timeout"] == 5


def test_the_settings_are_read_when_the_app_is_configured(
    apps: list[Celery], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_SOCKET_TIMEOUT", "2.5")
    monkeypatch.setenv("BROKER_RELIABLE_FETCH", "false")
    app = new_app(apps, broker_url=redis_url())
    telemetry.install(app)
    monkeypatch.setenv("BROKER_HEALTH_CHECK_INTERVAL", "4")  # before configuration: read
    options = app.conf.broker_transport_options
    assert options["socket_timeout"] == 2.5 and options["health_check_interval"] == 4
    assert options["reliable_fetch"] is False
    bad = new_app(apps, broker_url=redis_url())
    telemetry.install(bad)
    monkeypatch.setenv("BROKER_KEEPALIVE_IDLE", "0")
    with pytest.raises(SystemExit, match=r"^settings: BROKER_KEEPALIVE_IDLE: "):
        bad.conf.broker_url  # noqa: B018


def test_keepalive_reaches_the_socket(apps: list[Celery], redis_client: redis.Redis) -> None:
    """kombu passes socket_keepalive=None, which turns redis-py's keepalive off."""
    app = new_app(apps, broker_url=redis_url())
    telemetry.install(app)
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as client:
            client.ping()
            conn = client.connection_pool.get_connection()
            try:
                sock = conn._sock
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 45_000
            finally:
                client.connection_pool.release(conn)
