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

import re
from collections.abc import Collection
from http import HTTPStatus
from typing import Any

from celery import Celery

from telemetry.broker import redis_for
from telemetry.failed.locate import key_prefix
from telemetry.failed.operations import FailedWork
from telemetry.failed.query import FILTER_KEYS, QUERY_KEYS, BadInput
from telemetry.failed.records import Kind
from telemetry.http_server import BackgroundServer
from telemetry.metrics.failed_catalogue import OpsMetrics
from telemetry.metrics.recorder import OTHER_QUEUE, UNKNOWN_TASK
from telemetry.ops.access import AccessPolicy
from telemetry.ops.audit import AuditLog, audit_key
from telemetry.ops.bodies import parse_action, parse_query
from telemetry.ops.handler import ACTIONS, PREFIX, handler_for
from telemetry.ops.page import Page
from telemetry.settings import DEFAULT_TRACE_URL, TelemetrySettings

_RECORD_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class OpsServer(BackgroundServer):
    """Binds at construction (a taken port fails fast), serves after ``start()``."""

    def __init__(
        self,
        host: str,
        port: int,
        work: FailedWork,
        policy: AccessPolicy,
        audit: AuditLog,
        metrics: OpsMetrics | None = None,
        trace_url: str = DEFAULT_TRACE_URL,
    ) -> None:
        """``trace_url``: where the page links a trace (``OPS_TRACE_URL``)."""
        self.work = work
        self.policy = policy
        self.audit = audit
        self.metrics = metrics
        self.trace_url = trace_url
        self.page = Page.load()
        super().__init__(host, port, handler_for(self), "ops-http")

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
            settings.ops_trace_url,
        )

    # Routes ----------------------------------------------------------------------------
    def about(self, query: str) -> tuple[int, dict[str, Any]]:
        """What the page needs before it has a token: the access mode and the trace link."""
        if query:
            raise BadInput(query.split("=", 1)[0], "unknown key; this takes none")
        return HTTPStatus.OK, {
            "writes": self.policy.writes,
            "reads": self.policy.reads,
            "trace_url": self.trace_url,
        }

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
