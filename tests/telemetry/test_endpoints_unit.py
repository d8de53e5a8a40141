"""The HTTP endpoints: methods, bounds, liveness and the render cache."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from telemetry.endpoints import REQUEST_TIMEOUT_SECONDS, Liveness, RenderCache, TelemetryServer


def serve(registry: CollectorRegistry, liveness: Liveness | None = None) -> TelemetryServer:
    server = TelemetryServer("127.0.0.1", 0, RenderCache(registry, 1.0), liveness or Liveness(60))
    server.start()
    return server


def get(
    server: TelemetryServer, path: str, method: str = "GET", accept: str = ""
) -> tuple[int, bytes]:
    host, port = server.address
    request = urllib.request.Request(
        f"http://{host}:{port}{path}", method=method, headers={"Accept": accept}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_only_get_on_known_paths() -> None:
    server = serve(CollectorRegistry())
    try:
        assert get(server, "/metrics")[0] == 200
        assert get(server, "/livez")[0] == 200
        assert get(server, "/metrics", method="POST")[0] == 405
        assert get(server, "/nope")[0] == 404
        assert get(server, "/readyz")[0] == 404  # no probe attached
    finally:
        server.stop()


def raw_request(server: TelemetryServer, data: bytes) -> bytes:
    """Send raw bytes, return the status line (the server may close without one)."""
    with socket.create_connection(server.address, timeout=10) as connection:
        connection.sendall(data)
        return connection.makefile("rb").readline()


def test_requests_are_bounded() -> None:
    server = serve(CollectorRegistry())
    try:
        # An oversized request line, too many headers, a large body that is never read
        assert b" 414 " in raw_request(server, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
        headers = b"".join(b"X-%d: y\r\n" % n for n in range(150))
        assert b" 431 " in raw_request(server, b"GET /metrics HTTP/1.1\r\n" + headers + b"\r\n")
        big = b"POST /metrics HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 65536
        assert b" 405 " in raw_request(server, big)
        # A client that connects and says nothing is dropped after the request timeout
        started = time.monotonic()
        with socket.create_connection(server.address, timeout=30) as idle:
            assert idle.recv(1) == b""
        assert time.monotonic() - started < REQUEST_TIMEOUT_SECONDS + 2
        assert get(server, "/metrics")[0] == 200
    finally:
        server.stop()


def test_livez_turns_503_when_the_loop_stops_ticking() -> None:
    liveness = Liveness(timeout=0.2)
    server = serve(CollectorRegistry(), liveness)
    try:
        liveness.tick()
        assert get(server, "/livez")[0] == 200
        time.sleep(0.3)
        status, body = get(server, "/livez")
        assert status == 503 and b'"alive": false' in body
        assert b"has not ticked for 0." in body and b"over the 0.2 s liveness timeout" in body
    finally:
        server.stop()


def test_a_taken_port_fails_at_construction() -> None:
    first = serve(CollectorRegistry())
    try:
        with pytest.raises(OSError):
            TelemetryServer(
                "127.0.0.1", first.address[1], RenderCache(CollectorRegistry(), 1), Liveness(60)
            )
    finally:
        first.stop()


def test_metrics_are_rendered_at_most_once_per_interval() -> None:
    """Scrapes within the render interval are served from the cache (``python -m bench
    --suite scrape`` measures what a render and a cached scrape cost)."""
    registry = CollectorRegistry()
    late = Counter("late_events", "Counted after the first scrape.", registry=registry)
    server = TelemetryServer("127.0.0.1", 0, RenderCache(registry, interval=3600), Liveness(60))
    server.start()
    try:
        first = get(server, "/metrics")[1]
        late.inc()
        assert get(server, "/metrics")[1] == first  # served from the cache
    finally:
        server.stop()
    assert b"late_events_total 0.0" in first
    assert b"late_events_total 1.0" in RenderCache(registry, interval=0).render(openmetrics=False)
