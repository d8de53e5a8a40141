"""The operator API's HTTP surface in-process: routes, methods, the body's limits, a dead broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from telemetry.deadletters.policy import DEFAULT_POLICY
from telemetry.failed.operations import FailedWork
from telemetry.failed.records import Kind
from telemetry.failed.requeue import Requeuer
from telemetry.failed.store import Caps, FailedStore, StoreKeys
from telemetry.ops.access import AccessPolicy
from telemetry.ops.audit import AuditLog
from telemetry.ops.server import OpsServer
from tests.conftest import redis_url
from tests.support.failed import OpsClient
from tests.support.worker_process import free_port

TOKEN = b"an-operator-token-of-some-length"


def serve(client: redis.Redis, broker: str) -> OpsServer:
    app = Celery("ops-server-test", broker=broker, set_as_current=False)
    stores = {
        kind: FailedStore(client, StoreKeys.of(f"t:{kind}"), Caps(100, 10**6)) for kind in Kind
    }
    server = OpsServer(
        "127.0.0.1",
        0,
        FailedWork(stores, Requeuer(app, None, DEFAULT_POLICY)),
        AccessPolicy(TOKEN, True, frozenset({"127.0.0.1"})),
        AuditLog(client, "t:audit"),
    )
    server.start()
    return server


@pytest.fixture
def ops(redis_client: redis.Redis) -> Iterator[OpsClient]:
    server = serve(redis_client, redis_url())
    yield OpsClient(server.address[1], TOKEN.decode())
    server.stop()


def test_routes_and_methods(ops: OpsClient) -> None:
    assert ops.get("/api/v1/failed")[1] == {"items": [], "count": 0, "next": None}
    assert ops.get("/api/v1/failed/groups") == (200, {"groups": [], "count": 0})
    assert ops.get("/api/v1/failed/0d4e9d1c-0000-4000-8000-000000000000")[0] == 404
    assert ops.get("/api/v1/failed/not%20an%20id")[0] == 404
    assert ops.get("/metrics")[0] == 404
    assert ops.get("/api/v1/failed/requeue")[0] == 405
    assert ops.post("/api/v1/failed", {"dry_run": True})[0] == 405
    status, _, headers = ops.request("PUT", "/api/v1/failed")
    assert status == 405 and headers["allow"] == "GET, HEAD, POST"
    status, answer, headers = ops.request("HEAD", "/api/v1/failed")
    assert status == 200 and answer is None and headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"


def test_a_body_needs_its_length_and_json(ops: OpsClient) -> None:
    chunked = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
    status, answer, _ = ops.request(
        "POST", "/api/v1/failed/delete", raw=b"0\r\n\r\n", headers=chunked
    )
    assert (status, answer["error"]) == (411, "Content-Length required")
    assert ops.post("/api/v1/failed/delete?dry_run=1", {"ids": ["x"], "dry_run": True})[0] == 400


def test_a_dead_broker_is_a_503_not_a_dropped_connection(redis_client: redis.Redis) -> None:
    dead = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))  # as telemetry.broker's
    server = serve(dead, f"redis://127.0.0.1:{free_port()}/0")
    try:
        client = OpsClient(server.address[1], TOKEN.decode())
        status, answer = client.get("/api/v1/failed")
        assert (status, answer["error"]) == (503, "broker unavailable: ConnectionError")
    finally:
        server.stop()
