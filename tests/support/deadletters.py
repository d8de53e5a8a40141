"""The dead-letter list and the health round trip, as the dead-letter tests read them."""

from __future__ import annotations

import json
from typing import Any

import redis

from worker.celery_app import app

#: The list's key without a prefix, spelled out: the tests pin it.
DEADLETTER_KEY = "jobpilot:deadletter"


def records(client: redis.Redis, key: str = DEADLETTER_KEY) -> list[dict[str, Any]]:
    return [json.loads(r) for r in client.lrange(key, 0, -1)]


def health_round_trip(timeout: float = 15) -> None:
    """The worker still serves: a health task published now comes back from a pool process."""
    assert app.send_task("health_check_task").get(timeout=timeout)["pid"] > 0
