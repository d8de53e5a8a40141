"""The operator API: failed work as JSON, on its own bind, served by the broker exporter.

    server = OpsServer(settings.ops_host, settings.ops_port, work, policy, audit, metrics)
    server.start(); server.stop()

``GET  /api/v1/failed``            a page of records, newest first (``telemetry.failed.query``)
``GET  /api/v1/failed/groups``     counts by kind, queue, task and exception, for a filter
``GET  /api/v1/failed/{id}``       one record whole, its traceback included
``POST /api/v1/failed/requeue``    by ids or filter, with a dry run (``telemetry.ops.bodies``)
``POST /api/v1/failed/delete``     the same, deleting

Access is ``telemetry.ops.access``'s, the audit trail ``telemetry.ops.audit``'s.
Every answer is JSON; a bad input is 400 naming the key (``{"error": ..., "key": ...}``).
The server's own limits: a body over 1 MiB is refused unread (413), a body must
be ``application/json`` (415) with a ``Content-Length`` (411), and a client
that stalls is dropped after 5 s. Request lines and headers are bounded by the
standard library, as for ``telemetry.endpoints``. A broker error is 503.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Collection
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from telemetry.broker import redis_for
from telemetry.failed.locate import key_prefix
from telemetry.failed.operations import FailedWork
from telemetry.failed.query import FILTER_KEYS, QUERY_KEYS, BadInput
from telemetry.failed.records import Kind
from telemetry.metrics.catalogue import OpsMetrics
from telemetry.metrics.recorder import OTHER_QUEUE, UNKNOWN_TASK
from telemetry.ops.access import AccessPolicy
from telemetry.ops.audit import AuditLog, audit_key
from telemetry.ops.bodies import parse_action, parse_query
from telemetry.settings import TelemetrySettings

logger = logging.getLogger("telemetry.ops")

PREFIX = "/api/v1/failed"
MAX_BODY_BYTES = 1_048_576
REQUEST_TIMEOUT_SECONDS = 5.0
ACTIONS = ("requeue", "delete")
_RECORD_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class OpsServer:
    """Binds at construction (a taken port fails fast), serves after ``start()``."""

    def __init__(
        self,
        host: str,
        port: int,
        work: FailedWork,
        policy: AccessPolicy,
        audit: AuditLog,
        metrics: OpsMetrics | None = None,
    ) -> None:
        self.work = work
        self.policy = policy
        self.audit = audit
        self.metrics = metrics
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @classmethod
    def for_app(
        cls, app: Celery, settings: TelemetrySettings, queues: Collection[str], metrics: OpsMetrics
    ) -> OpsServer:
        """``app``'s failed work at ``OPS_HOST:OPS_PORT``; a requeue goes to one of ``queues``.
        Raises OSError when the address cannot be bound."""

        def count_requeued(kind: str, queue: str, task: str | None) -> None:
            # An exhausted task ran in a worker: its name is a task's. A dead letter's
            # may be anything a producer wrote, so it is kept only if the app knows it.
            known = task is not None and (kind == Kind.EXHAUSTED or task in app.tasks)
            metrics.failed_requeued.labels(
                kind, queue if queue in queues else OTHER_QUEUE, task if known else UNKNOWN_TASK
            ).inc()

        for action in ACTIONS:
            metrics.ops_actions.labels(action).inc(0)
            metrics.ops_actions.labels(f"{action}_dry_run").inc(0)
        with app.connection_for_read() as connection:
            client = redis_for(connection)
            prefix = key_prefix(connection.transport_options or {})
        return cls(
            settings.ops_host,
            settings.ops_port,
            FailedWork.for_app(app, settings, queues, count_requeued),
            AccessPolicy.from_settings(settings),
            AuditLog(client, audit_key(prefix)),
            metrics,
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever, name="ops-http", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread = None
        self.httpd.server_close()

    # Routes ----------------------------------------------------------------------------
    def read(self, path: str, query: str) -> tuple[int, dict[str, Any]]:
        if path == PREFIX:
            return HTTPStatus.OK, self.work.listing(parse_query(query, QUERY_KEYS))
        if path == f"{PREFIX}/groups":
            return HTTPStatus.OK, self.work.groups(parse_query(query, FILTER_KEYS).filter)
        record_id = path[len(PREFIX) + 1 :]
        if query:
            raise BadInput(query.split("=", 1)[0], "unknown key; a record takes none")
        shown = self.work.show(record_id) if _RECORD_ID.match(record_id) else None
        if shown is None:
            return HTTPStatus.NOT_FOUND, {"error": f"no record {record_id}"}
        return HTTPStatus.OK, shown

    def act(self, action: str, body: bytes, client: str) -> tuple[int, dict[str, Any]]:
        request = parse_action(body, action)
        if action == "requeue":
            result = self.work.requeue(
                request.selection, dry_run=request.dry_run, force=request.force
            )
        else:
            result = self.work.delete(request.selection, dry_run=request.dry_run)
        answer = result.as_json()
        self.audit.record(
            action, request.selection.describe(), answer, client=client, dry_run=request.dry_run
        )
        if self.metrics is not None:
            self.metrics.ops_actions.labels(
                f"{action}_dry_run" if request.dry_run else action
            ).inc()
        return HTTPStatus.OK, answer


def route(path: str) -> tuple[str, str | None]:
    """(``read`` or ``write``, the action) for a path of the API; ``("", None)`` for any other."""
    if path == PREFIX or path == f"{PREFIX}/groups":
        return "read", None
    if path.startswith(f"{PREFIX}/"):
        tail = path[len(PREFIX) + 1 :]
        if tail in ACTIONS:
            return "write", tail
        return "read", None
    return "", None


def _handler_for(server: OpsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "jobpilot-ops"
        sys_version = ""
        timeout = REQUEST_TIMEOUT_SECONDS

        def log_message(self, format: str, *args: Any) -> None:  # writes are audited instead
            return

        def _json(self, status: int, payload: dict[str, Any], **headers: str) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, message: str, **headers: str) -> None:
            self._json(status, {"error": message}, **headers)

        def _guarded(self, answer: Callable[[], tuple[int, dict[str, Any]]]) -> None:
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

        def _admitted(self, kind: str) -> bool:
            """The Host check and the token; answers and returns False when refused."""
            if not server.policy.host_allowed(self.headers.get("Host")):
                self._error(HTTPStatus.BAD_REQUEST, "Host: not one of OPS_ALLOWED_HOSTS")
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

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            kind, _ = route(path)
            if kind == "":
                self._error(HTTPStatus.NOT_FOUND, "not found")
            elif kind == "write":
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "POST only", Allow="POST")
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
            elif kind == "read":
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
