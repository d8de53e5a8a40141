"""Every synchronous wait on the app's Redis broker and result backend is bounded.

    bounds = BrokerBounds()        # an app concern: telemetry.install(app) builds it
    bounds.install(app)            # what telemetry.install(app) does, in every process
    bounds.uninstall(app)          # the app's configuration as it was

kombu's Redis transport waits forever by default: no ``socket_timeout`` (a
publish, an ack, a heartbeat on a connection a NAT forgot never returns),
``socket_keepalive=None`` (which turns redis-py's keepalive off), and
``health_check_interval`` at 25 s. Celery's Redis result backend waits 120 s.
When the app is configured (``on_after_configure``, before any connection; at
once if it is configured already) this concern reads :class:`BrokerSettings`
(a bad value is one ``settings:`` line and an exit) and fills in, wherever the
app has not set its own value:

* ``broker_transport_options``: ``socket_timeout``, ``socket_connect_timeout``,
  ``socket_keepalive`` with ``socket_keepalive_options`` (idle, interval, count,
  and ``TCP_USER_TIMEOUT`` = idle + interval x count, so sent data a dead link
  never acknowledges ends the connection too), ``health_check_interval``, and
  ``reliable_fetch``; behind ``sentinel://`` the same socket options in
  ``sentinel_kwargs``, which redis-py stops deriving once it is given;
* the result backend's ``redis_socket_timeout``, ``redis_socket_connect_timeout``
  and ``redis_backend_health_check_interval``, and its ``sentinel_kwargs``.
  Keepalive stays redis-py's (on, 30/5/3): Celery has no setting for its options.

``uninstall`` puts back exactly what ``install`` changed. The settings apply
whether or not the telemetry is enabled: they keep messages, not metrics.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from telemetry.broker import REDIS_DRIVERS, driver_type
from telemetry.settings import BrokerSettings, ConfigError, read_settings
from telemetry.wiring.concern import Concern

#: Celery's Redis result backends, by URL scheme.
REDIS_BACKEND_SCHEMES = frozenset({"redis", "rediss", "sentinel", "socket", "redis+socket"})
_UNSET = object()


def keepalive_options(settings: BrokerSettings) -> dict[int, int]:
    """redis-py's ``socket_keepalive_options``: the probes, and ``TCP_USER_TIMEOUT`` in ms.
    Options the platform lacks are left out, as redis-py does with its defaults."""
    idle, interval, count = (
        settings.broker_keepalive_idle,
        settings.broker_keepalive_interval,
        settings.broker_keepalive_count,
    )
    wanted = {
        "TCP_KEEPIDLE": idle,
        "TCP_KEEPINTVL": interval,
        "TCP_KEEPCNT": count,
        "TCP_USER_TIMEOUT": (idle + interval * count) * 1000,
    }
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def socket_options(settings: BrokerSettings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.broker_socket_timeout,
        "socket_connect_timeout": settings.broker_connect_timeout,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(settings),
    }


def app_set(conf: Any, key: str) -> bool:
    """Whether any layer but Celery's own defaults (the last) holds ``key``."""
    return any(key in layer for layer in conf.maps[:-1])


def _with_sentinel_kwargs(options: dict[str, Any], settings: BrokerSettings) -> dict[str, Any]:
    given = dict(options.get("sentinel_kwargs") or {})
    sockets = socket_options(settings)
    return {**options, "sentinel_kwargs": {**sockets, **given}}


def bounded_config(conf: Any, settings: BrokerSettings, broker_is_redis: bool) -> dict[str, Any]:
    """The configuration keys to change and their new values; a pure function of ``conf``."""
    changes: dict[str, Any] = {}
    if broker_is_redis:
        given = dict(conf.broker_transport_options or {})
        ours = {
            **socket_options(settings),
            "health_check_interval": settings.broker_health_check_interval,
            "reliable_fetch": settings.broker_reliable_fetch,
        }
        options = {**ours, **given}
        if str(conf.broker_url or "").startswith("sentinel://"):
            options = _with_sentinel_kwargs(options, settings)
        if options != given:
            changes["broker_transport_options"] = options
    backend = str(conf.result_backend or "")
    scheme = backend.split("://", 1)[0] if "://" in backend else ""
    if scheme in REDIS_BACKEND_SCHEMES:
        for key, value in (
            ("redis_socket_timeout", settings.broker_socket_timeout),
            ("redis_socket_connect_timeout", settings.broker_connect_timeout),
            ("redis_backend_health_check_interval", settings.broker_health_check_interval),
        ):
            if not app_set(conf, key):
                changes[key] = value
        if scheme == "sentinel":
            given = dict(conf.result_backend_transport_options or {})
            options = _with_sentinel_kwargs(given, settings)
            if options != given:
                changes["result_backend_transport_options"] = options
    return changes


@dataclass
class Applied:
    """What ``install`` changed on the app: each key's earlier value in the app's own
    layer of changes (``_UNSET`` when the key was not there), and what it set."""

    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)


class BrokerBounds(Concern):
    """An app concern (``telemetry.wiring.concern``): the bounds, applied to one app."""

    def __init__(self) -> None:
        self.app: Celery | None = None
        self.applied: Applied | None = None

    def install(self, app: Celery) -> None:
        self.app = app
        if app.configured:
            self._apply(app)
        else:
            app.on_after_configure.connect(self._on_after_configure, weak=False)

    def uninstall(self, app: Celery) -> None:
        app.on_after_configure.disconnect(self._on_after_configure)
        applied, self.applied, self.app = self.applied, None, None
        if applied is None:
            return
        changes = app.conf.changes
        for key, value in applied.after.items():
            if changes.get(key, _UNSET) is not value:
                continue  # changed again since: not ours to undo
            earlier = applied.before[key]
            if earlier is _UNSET:
                del changes[key]
            else:
                changes[key] = earlier

    def _on_after_configure(self, sender: Any = None, **_: Any) -> None:
        if sender is not None and sender is self.app:
            self._apply(sender)

    def _apply(self, app: Celery) -> None:
        if self.applied is not None:
            return
        try:
            settings = read_settings(BrokerSettings)
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None
        conf = app.conf
        applied = Applied()
        for key, value in bounded_config(conf, settings, driver_type(app) in REDIS_DRIVERS).items():
            applied.before[key] = conf.changes.get(key, _UNSET)
            applied.after[key] = value
            conf.changes[key] = value
        self.applied = applied
