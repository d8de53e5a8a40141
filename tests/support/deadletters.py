"""The dead letters and the health round trip, as the dead-letter tests read them."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import redis

from tests.support.failed import DEAD_LETTERS, store
from tests.support.failed import records as failed_records
from worker.celery_app import app

#: The dead letters' base key without a prefix, spelled out: the tests pin it.
DEADLETTER_KEY = DEAD_LETTERS


def records(client: redis.Redis, key: str = DEADLETTER_KEY) -> list[dict[str, Any]]:
    """Every dead letter under ``key``, newest first, as the record's fields."""
    return [asdict(record) for record in failed_records(client, key)]


def size(client: redis.Redis, key: str = DEADLETTER_KEY) -> int:
    return store(client, key).size()


def clear(client: redis.Redis, key: str = DEADLETTER_KEY) -> None:
    client.delete(*store(client, key).keys.set_keys)


def health_round_trip(timeout: float = 15) -> None:
    """The worker still serves: a health task published now comes back from a pool process."""
    assert app.send_task("health_check_task").get(timeout=timeout)["pid"] > 0
