"""The worker's HTTP endpoints, served from its main process.

``/metrics``  Prometheus text, or OpenMetrics (with exemplars) when the scraper
              asks for ``application/openmetrics-text``. Rendered at most once
              per ``render_interval`` per format; concurrent scrapers share the
              cached bytes. A scrape performs no network I/O.
``/livez``    200 while the consumer's event loop ticked within the liveness
              timeout, or Celery's reconnect path did (``telemetry.readiness.
              consumer``), else 503 with the age and why. No network I/O. (A
              beat answers from its own loop: ``telemetry.beat.health``.)

Everything else is 404, or 405 for a method other than GET/HEAD on a known
path. Request lines and headers are bounded by the standard library's limits.

:class:`Endpoints` is a worker's concern (``telemetry.wiring.concern``): the
port is bound when it is built, before any concern starts, so a taken port is
one line and a non-zero exit; it serves once the others are ready.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client import exposition as text_format
from prometheus_client.openmetrics import exposition as openmetrics_format

from telemetry.http_server import BackgroundServer
from telemetry.readiness.consumer import ReconnectTicks
from telemetry.settings import TelemetrySettings
from telemetry.wiring.concern import Concern

PATHS = ("/metrics", "/livez", "/readyz")
REQUEST_TIMEOUT_SECONDS = 5.0
#: How often the consumer's event loop marks itself alive for /livez.
LIVENESS_TICK_SECONDS = 1.0

logger = logging.getLogger("telemetry.endpoints")


class LivenessReport(Protocol):
    def report(self) -> tuple[bool, dict[str, Any]]:
        """(alive, the JSON body of /livez)."""
        ...


class Liveness:
    """When the consumer's event loop last ticked (monotonic seconds)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._last_tick = time.monotonic()

    def tick(self) -> None:
        self._last_tick = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self._last_tick

    def alive(self) -> bool:
        return self.age() <= self.timeout

    def report(self) -> tuple[bool, dict[str, Any]]:
        age = self.age()
        alive = age <= self.timeout
        payload: dict[str, Any] = {"alive": alive, "age_seconds": round(age, 3)}
        if not alive:
            payload["reason"] = (
                f"the consumer's event loop has not ticked for {age:.1f} s, over the "
                f"{self.timeout:g} s liveness timeout"
            )
        return alive, payload


class RenderCache:
    """Exposition bytes per format, re-rendered at most once per interval."""

    def __init__(
        self,
        registry: CollectorRegistry,
        interval: float,
        before_render: Callable[[], object] | None = None,
    ) -> None:
        """``before_render``: called before each fresh render, under the cache's lock, to
        bring series read from live state up to date."""
        self.registry = registry
        self.interval = interval
        self.before_render = before_render
        self._lock = threading.Lock()
        self._cache: dict[bool, tuple[float, bytes]] = {}

    def render(self, openmetrics: bool) -> bytes:
        with self._lock:
            cached = self._cache.get(openmetrics)
            now = time.monotonic()
            if cached is not None and now - cached[0] < self.interval:
                return cached[1]
            if self.before_render is not None:
                self.before_render()
            generate = (
                openmetrics_format.generate_latest if openmetrics else text_format.generate_latest
            )
            body: bytes = generate(self.registry)
            self._cache[openmetrics] = (now, body)
            return body


class ReadinessReport(Protocol):
    def report(self) -> tuple[int, dict[str, Any]]:
        """The status and the JSON body /readyz answers."""


class TelemetryServer(BackgroundServer):
    """Binds at construction (so a taken port fails fast), serves after ``start()``."""

    def __init__(
        self,
        host: str,
        port: int,
        cache: RenderCache,
        liveness: LivenessReport,
        readiness: ReadinessReport | None = None,
    ) -> None:
        """``readiness``: what /readyz reports; without it, /readyz is 404."""
        self.cache = cache
        self.liveness = liveness
        self.readiness = readiness
        super().__init__(host, port, _handler_for(self), "telemetry-http")


def _handler_for(server: TelemetryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "jobpilot-telemetry"
        sys_version = ""
        # Requests are bounded: the request line and each header line by the
        # standard library (64 KiB, 414/431), at most 100 headers (431), bodies
        # are never read, and a client that stalls is dropped after this long.
        timeout = REQUEST_TIMEOUT_SECONDS

        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not log lines
            return

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                openmetrics = "application/openmetrics-text" in self.headers.get("Accept", "")
                body = server.cache.render(openmetrics)
                content_type = (
                    openmetrics_format.CONTENT_TYPE_LATEST
                    if openmetrics
                    else text_format.CONTENT_TYPE_LATEST
                )
                self._send(HTTPStatus.OK, body, content_type)
            elif path == "/livez":
                alive, payload = server.liveness.report()
                self._json(HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE, payload)
            elif path == "/readyz" and server.readiness is not None:
                status, payload = server.readiness.report()
                self._json(status, payload)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        do_HEAD = do_GET

        def _not_allowed(self) -> None:
            path = self.path.split("?", 1)[0]
            status = HTTPStatus.METHOD_NOT_ALLOWED if path in PATHS else HTTPStatus.NOT_FOUND
            self._json(status, {"error": status.phrase.lower()})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    return Handler


class Endpoints(Concern):
    """A worker's /metrics, /livez and /readyz, on ``METRICS_HOST:METRICS_PORT``."""

    def __init__(
        self, settings: TelemetrySettings, cache: RenderCache, readiness: ReadinessReport | None
    ) -> None:
        """Binds the port now.

        Raises:
            SystemExit: the port cannot be bound, in one line.
        """
        self.liveness = Liveness(settings.liveness_timeout)
        self.reconnects = ReconnectTicks(self.liveness.tick)
        try:
            self.server = TelemetryServer(
                settings.metrics_host, settings.metrics_port, cache, self.liveness, readiness
            )
        except OSError as exc:
            raise SystemExit(
                f"metrics: cannot listen on {settings.metrics_host}:{settings.metrics_port}: "
                f"{exc.strerror or exc}"
            ) from None

    def ready(self, consumer: Any) -> None:
        hub = getattr(getattr(consumer, "controller", None), "hub", None)
        if hub is not None:
            # A timer, not an on_tick callback: the loop iterates several times per
            # task, and a stuck loop runs no timers either.
            hub.call_repeatedly(LIVENESS_TICK_SECONDS, self.liveness.tick)
        # Celery's reconnect path ticks too: a worker waiting for its broker is alive.
        self.reconnects.ready(consumer)
        self.server.start()
        host, port = self.server.address
        logger.info("telemetry: serving /metrics and /livez on http://%s:%d", host, port)

    def stop(self) -> None:
        self.reconnects.stop()
        self.server.stop()

    def pool_process(self) -> None:
        self.server.close_inherited_socket()
