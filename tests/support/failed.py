"""The failed-work sets as the tests read them, and a plain HTTP client of the operator API."""

from __future__ import annotations

import http.client
import json
from typing import Any

import redis

from telemetry.failed.records import FailedRecord
from telemetry.failed.store import Caps, FailedStore, StoreKeys

#: The sets' base keys without a prefix, spelled out: the tests pin them.
EXHAUSTED = "jobpilot:exhausted"
DEAD_LETTERS = "jobpilot:deadletter"


def store(client: redis.Redis, base: str = EXHAUSTED) -> FailedStore:
    return FailedStore(client, StoreKeys.of(base), Caps(10_000, 67_108_864))


def records(client: redis.Redis, base: str = EXHAUSTED) -> list[FailedRecord]:
    """Every record of the set, newest first."""
    kept = store(client, base)
    found = kept.records([record_id for record_id, _ in kept.window()])
    return [record for record in found if record is not None]


class OpsClient:
    """Requests to the operator API with chosen headers; answers (status, JSON, headers)."""

    def __init__(self, port: int, token: str | None = None, host: str = "127.0.0.1") -> None:
        self.port = port
        self.token = token
        self.host = host

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        sent = {"Host": f"{self.host}:{self.port}"}
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in sent.items():
                connection.putheader(name, value)
            if data is not None and "Content-Length" not in sent:
                connection.putheader("Content-Length", str(len(data)))
            connection.endheaders(data)
            response = connection.getresponse()
            payload = response.read()
            answer = json.loads(payload) if payload else None
            return response.status, answer, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, answer, _ = self.request("GET", path, **kwargs)
        return status, answer

    def post(self, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
        status, answer, _ = self.request("POST", path, body, **kwargs)
        return status, answer
