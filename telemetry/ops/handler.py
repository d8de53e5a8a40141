"""The ops server's HTTP handling: routes to the server's answers, its limits and its headers.

    ThreadingHTTPServer((host, port), handler_for(ops_server))

Every answer carries ``telemetry.ops.page.SECURITY_HEADERS`` and a
Content-Security-Policy: the page's for the page and its files, one that allows
nothing for JSON. A request's ``Host`` must be one of ``OPS_ALLOWED_HOSTS``
before anything is answered, the page included. The page, its files and
``GET /api/v1/ops`` (the access mode, which the page needs before it has a
token) need no token; the failed work's routes are ``telemetry.ops.access``'s.

Limits: a body over 1 MiB is refused unread (413), a body must be
``application/json`` (415) with a ``Content-Length`` (411), and a client that
stalls is dropped after 5 s. Request lines and headers are bounded by the
standard library, as for ``telemetry.endpoints``. A broker error is 503, anything
unexpected a 500 of its own, never a dropped connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

import redis
from kombu.exceptions import OperationalError

from telemetry.failed.query import BadInput
from telemetry.ops.access import AccessPolicy
from telemetry.ops.page import API_POLICY, PAGE_PATH, PAGE_POLICY, SECURITY_HEADERS, Page

logger = logging.getLogger("telemetry.ops")

PREFIX = "/api/v1/failed"
ABOUT_PATH = "/api/v1/ops"
ACTIONS = ("requeue", "delete")
MAX_BODY_BYTES = 1_048_576
REQUEST_TIMEOUT_SECONDS = 5.0

Answer = tuple[int, dict[str, Any]]


class Answers(Protocol):
    """What the handler asks of the server (``telemetry.ops.server.OpsServer``)."""

    policy: AccessPolicy
    page: Page

    def about(self, query: str) -> Answer: ...

    def read(self, path: str, query: str) -> Answer: ...

    def act(self, action: str, body: bytes, client: str) -> Answer: ...


def route(path: str) -> tuple[str, str | None]:
    """(``read``, ``write``, ``about``, ``page`` or ``home``, the action) for a path the
    server answers; ``("", None)`` for any other."""
    if path == PREFIX or path == f"{PREFIX}/groups":
        return "read", None
    if path.startswith(f"{PREFIX}/"):
        tail = path[len(PREFIX) + 1 :]
        if tail in ACTIONS:
            return "write", tail
        return "read", None
    if path == ABOUT_PATH:
        return "about", None
    if Page.serves(path):
        return "page", None
    if path in ("/", "/favicon.ico"):
        return "home", None
    return "", None


def handler_for(server: Answers) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "jobpilot-ops"
        sys_version = ""
        timeout = REQUEST_TIMEOUT_SECONDS

        def log_message(self, format: str, *args: Any) -> None:  # writes are audited instead
            return

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str,
            policy: str = API_POLICY,
            **headers: str,
        ) -> None:
            """An answer with the security headers; ``policy`` is its Content-Security-Policy."""
            self.send_response(status)
            if status != HTTPStatus.NO_CONTENT:
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", policy)
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload: dict[str, Any], **headers: str) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json", **headers)

        def _error(self, status: int, message: str, **headers: str) -> None:
            self._json(status, {"error": message}, **headers)

        def _guarded(self, answer: Callable[[], Answer]) -> None:
            try:
                status, payload = answer()
            except BadInput as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc), "key": exc.key})
                return
            except (redis.RedisError, OSError, OperationalError) as exc:
                logger.warning("ops: broker error: %s", type(exc).__name__)
                self._error(
                    HTTPStatus.SERVICE_UNAVAILABLE, f"broker unavailable: {type(exc).__name__}"
                )
                return
            except Exception as exc:  # answered, never a dropped connection
                logger.error(
                    "ops: %s %s failed: %s",
                    self.command,
                    self.path.partition("?")[0],
                    type(exc).__name__,
                )
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
                return
            self._json(status, payload)

        def _host_allowed(self) -> bool:
            if server.policy.host_allowed(self.headers.get("Host")):
                return True
            self._error(HTTPStatus.BAD_REQUEST, "Host: not one of OPS_ALLOWED_HOSTS")
            return False

        def _admitted(self, kind: str) -> bool:
            """The Host check and the token; answers and returns False when refused."""
            if not self._host_allowed():
                return False
            denial = server.policy.denial(
                write=kind == "write", authorization=self.headers.get("Authorization")
            )
            if denial is not None:
                status, message = denial
                extra = {"WWW_Authenticate": 'Bearer realm="jobpilot-ops"'} if status == 401 else {}
                self._error(status, message, **extra)
                return False
            return True

        def _page(self, path: str) -> None:
            asset = server.page.asset(path)
            if asset is None:
                self._error(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    "the page's files are missing from this install",
                )
                return
            self._send(HTTPStatus.OK, asset.body, asset.content_type, PAGE_POLICY)

        def _home(self, path: str) -> None:
            """``/`` leads to the page; ``/favicon.ico``, which browsers ask for, is empty
            (an icon of our own would be a file more, and a 404 a console error)."""
            if path == "/":
                self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", Location=PAGE_PATH[1:])
            else:
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            kind, _ = route(path)
            if kind == "":
                self._error(HTTPStatus.NOT_FOUND, "not found")
            elif kind == "write":
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "POST only", Allow="POST")
            elif kind == "page":
                if self._host_allowed():
                    self._page(path)  # the query holds the page's filters, read by its script
            elif kind == "home":
                if self._host_allowed():
                    self._home(path)
            elif kind == "about":
                if self._host_allowed():
                    self._guarded(lambda: server.about(query))
            elif self._admitted("read"):
                self._guarded(lambda: server.read(path, query))

        do_HEAD = do_GET

        def do_POST(self) -> None:
            # A refused request's body is never read, so the connection cannot be reused.
            self.close_connection = True
            path, _, query = self.path.partition("?")
            kind, action = route(path)
            if kind == "":
                self._error(HTTPStatus.NOT_FOUND, "not found")
            elif kind != "write":
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "GET only", Allow="GET, HEAD")
            elif self._admitted("write"):
                assert action is not None
                body = self._body()
                if body is None:
                    return
                if query:
                    self._error(
                        HTTPStatus.BAD_REQUEST, "query: an action takes its input in the body"
                    )
                    return
                peer = str(self.client_address[0])
                client = server.policy.client(peer, self.headers.get("X-Forwarded-For"))
                self._guarded(lambda: server.act(action, body, client))

        def _body(self) -> bytes | None:
            """The request body, or None once a refusal is sent (the body unread)."""
            length = self.headers.get("Content-Length")
            if self.headers.get("Transfer-Encoding") or length is None:
                self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
                return None
            if not length.isdigit():
                self._error(HTTPStatus.BAD_REQUEST, "Content-Length: not a number")
                return None
            if int(length) > MAX_BODY_BYTES:
                self._error(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body: at most {MAX_BODY_BYTES} bytes"
                )
                return None
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type != "application/json":
                self._error(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type: application/json only"
                )
                return None
            return self.rfile.read(int(length))

        def _not_allowed(self) -> None:
            self.close_connection = True  # any body is left unread
            self._error(
                HTTPStatus.METHOD_NOT_ALLOWED, "GET, HEAD or POST only", Allow="GET, HEAD, POST"
            )

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    return Handler
