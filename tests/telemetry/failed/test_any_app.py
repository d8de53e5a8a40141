"""Another team's app (not jobpilot): its failed work appears in the same operator API."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from tests.support.broker_exporter import ExporterProcess
from tests.support.failed import OpsClient
from tests.support.inventory_worker import APP, WORKER, inventory_env
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.tracing import run_as_producer
from tests.support.worker_process import WorkerProcess, wait_until

pytestmark = pytest.mark.integration

FAILED = "/api/v1/failed"
TOKEN = "inventory-operator-token"


def test_another_apps_exhausted_tasks_and_dead_letters_are_listed_and_requeued(
    start_worker: Callable[..., WorkerProcess],
    start_exporter: Callable[..., ExporterProcess],
    receiver: OtlpReceiver,
    redis_client: redis.Redis,
) -> None:
    # Given the inventory app, installed with exhausted=True, its prefork worker and its exporter
    env = inventory_env(receiver)
    start_worker(env, command=[*WORKER, "-Q", "orders", "--loglevel", "INFO"])
    ops = OpsClient(start_exporter({**env, "OPS_TOKEN": TOKEN}, app=APP).ops_port, TOKEN)
    # When one of its tasks fails for good, and an item its worker cannot run is pushed
    task_id = run_as_producer(
        env, f"from {APP} import app\nprint(app.send_task('order_cancel', args=[7]).id)\n"
    )
    redis_client.lpush("orders", b"garbage, not a message")

    def both() -> dict[str, object] | None:
        status, listing = ops.get(FAILED)
        return listing if status == 200 and listing["count"] == 2 else None

    listing = wait_until(both, 20, message="both kinds in the API")
    # Then both appear, with the app's own queues and task
    by_kind = {item["kind"]: item for item in listing["items"]}  # type: ignore[index]
    assert by_kind["exhausted"]["task"] == "order_cancel"
    assert by_kind["exhausted"]["task_id"] == task_id
    assert by_kind["exhausted"]["queue"] == "orders"
    assert by_kind["exhausted"]["exception"] == "LookupError"
    assert by_kind["exhausted"]["message"] == "no order 7"
    assert by_kind["exhausted"]["trace_id"] is not None
    assert (by_kind["dead_letter"]["queue"], by_kind["dead_letter"]["reason"]) == (
        "orders",
        "not_json",
    )
    status, groups = ops.get(f"{FAILED}/groups?kind=exhausted")
    assert status == 200 and [(g["task"], g["count"]) for g in groups["groups"]] == [
        ("order_cancel", 1)
    ]
    status, record = ops.get(f"{FAILED}/{by_kind['exhausted']['id']}")
    assert status == 200 and "LookupError: no order 7" in record["traceback"]
    # And a requeue puts it back on the app's queue, where it fails again, as a rerun
    first = by_kind["exhausted"]["id"]
    status, done = ops.post(f"{FAILED}/requeue", {"ids": [first], "dry_run": False})
    assert (status, done) == (200, {"matched": 1, "requeued": 1, "skipped": {}})

    def rerun() -> list[dict[str, object]]:
        items = ops.get(f"{FAILED}?kind=exhausted")[1]["items"]
        return [item for item in items if item["id"] != first]

    again = wait_until(rerun, 20, message="the rerun's record")[0]
    assert again["task_id"] == task_id
    headers = ops.get(f"{FAILED}/{again['id']}")[1]["envelope"]["headers"]
    assert headers["x-jobpilot-requeue"] == 1 and "x-jobpilot-requeued-from" in headers
