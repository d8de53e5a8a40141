"""The operator API as an operator uses it: a real prefork worker, the real exporter process."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from tests.support.broker_exporter import ExporterProcess
from tests.support.failed import OpsClient, records
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.scrape import samples_by_labels
from tests.support.tracing import traced_env
from tests.support.worker_process import WorkerProcess, wait_until
from worker.celery_app import app

pytestmark = pytest.mark.integration

FAST = {"QUEUE_POLL_INTERVAL": "0.3", "METRICS_RENDER_INTERVAL": "0"}
TOKEN = "an-operator-token-of-some-length"
FAILED = "/api/v1/failed"
SECRET = "s3cret-arg-value"


def test_requeue_by_filter_runs_the_tasks_again_counted_and_linked_to_the_failed_runs(
    start_worker: Callable[..., WorkerProcess],
    start_exporter: Callable[..., ExporterProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    receiver: OtlpReceiver,
) -> None:
    # Given three tasks that failed their only run, and another failure the filter leaves alone
    env = {**traced_env(worker_env, receiver), **FAST}
    worker = start_worker(env)
    keys = [f"runs:{n}" for n in range(3)]
    for key in keys:
        app.send_task("tests.fail_first_run", args=[key, SECRET])
    app.send_task("tests.always_fail", args=["other"])
    wait_until(lambda: len(records(redis_client)) == 4, 20, message="four exhausted records")
    failed = {r.task_id: r for r in records(redis_client) if r.task == "tests.fail_first_run"}
    exporter = start_exporter({**env, "OPS_TOKEN": TOKEN})
    ops = OpsClient(exporter.ops_port, TOKEN)
    selection = {"filter": {"kind": "exhausted", "task": "tests.fail_first_run"}}
    # When a dry run asks how many a requeue would touch
    status, dry = ops.post(f"{FAILED}/requeue", {**selection, "dry_run": True})
    # Then it answers 3 and changes nothing
    assert (status, dry) == (200, {"matched": 3, "requeued": 0, "skipped": {}})
    assert len(records(redis_client)) == 4
    # When the requeue runs
    status, done = ops.post(f"{FAILED}/requeue", {**selection, "dry_run": False})
    # Then it requeues the same 3, and the tasks run again and succeed the second time
    assert (status, done) == (200, {"matched": 3, "requeued": 3, "skipped": {}})
    wait_until(
        lambda: all(redis_client.get(key) == b"2" for key in keys), 20, message="three reruns"
    )
    assert [r.task for r in records(redis_client)] == ["tests.always_fail"]
    # And the exporter counts 3 requeued, and its two actions
    metrics = samples_by_labels(exporter.url + "/metrics")
    requeued = metrics["celery_failed_requeued_total"]
    assert requeued == {
        (("kind", "exhausted"), ("queue", "default"), ("task", "tests.fail_first_run")): 3
    }
    actions = metrics["celery_ops_actions_total"]
    assert actions[(("action", "requeue"),)] == 1 == actions[(("action", "requeue_dry_run"),)]
    # And the worker counts no duplicate execution
    duplicates = samples_by_labels(worker.metrics_url)["celery_task_duplicate_executions_total"]
    assert duplicates[(("queue", "default"), ("task", "tests.fail_first_run"))] == 0
    # And each rerun's run span starts a new trace, with one link to its failed run
    for task_id, record in failed.items():

        def rerun(task_id: str = task_id) -> list[ReceivedSpan]:
            return [
                span
                for span in receiver.named("run/tests.fail_first_run")
                if span.attributes.get("messaging.message.id") == task_id and span.links
            ]

        span = wait_until(rerun, 20, message=f"the rerun of {task_id}")[0]
        assert span.links == [(record.trace_id, record.span_id)]
        assert span.trace_id != record.trace_id and span.parent_span_id == ""
        assert span.attributes["celery.task.retries"] == 0


def test_access_audit_bad_input_and_no_arguments_in_any_answer(
    start_worker: Callable[..., WorkerProcess],
    start_exporter: Callable[..., ExporterProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    # Given two failures whose arguments are a secret: one from retry() without exc,
    # whose MaxRetriesExceededError message carries the arguments, and one plain
    worker_env = {**worker_env, **FAST}
    start_worker(worker_env)
    app.send_task("tests.retry_without_exc", args=[SECRET])
    app.send_task("tests.always_fail", args=[SECRET])
    wait_until(lambda: len(records(redis_client)) == 2, 20, message="two exhausted records")
    ids = [r.id for r in records(redis_client)]

    # Without OPS_TOKEN: reads are open, writes are 403
    read_only = OpsClient(start_exporter(worker_env).ops_port)
    status, listing = read_only.get(FAILED)
    assert status == 200 and listing["count"] == 2 and listing["next"] is None
    assert read_only.post(f"{FAILED}/requeue", {"ids": ids, "dry_run": True})[0] == 403
    # And no answer carries an argument value, though the record holds it
    answers = [listing, read_only.get(f"{FAILED}/groups")[1]]
    answers += [read_only.get(f"{FAILED}/{record_id}")[1] for record_id in ids]
    assert all(SECRET not in json.dumps(answer) for answer in answers)
    assert any(SECRET in r.message for r in records(redis_client) if r.message)
    shown = {a["task"]: a for a in answers[2:]}
    assert shown["tests.retry_without_exc"]["message"].endswith("args:<1 args> kwargs:<0 kwargs>")
    assert shown["tests.retry_without_exc"]["exception"] == "MaxRetriesExceededError"
    assert "body" not in shown["tests.always_fail"]["envelope"]
    assert "argsrepr" not in shown["tests.always_fail"]["envelope"]["headers"]

    # With OPS_TOKEN: 401 without it (reads too), 200 with it; a wrong Host is 400
    exporter = start_exporter({**worker_env, "OPS_TOKEN": TOKEN})
    anonymous, operator = OpsClient(exporter.ops_port), OpsClient(exporter.ops_port, TOKEN)
    status, _, headers = anonymous.request("GET", FAILED)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert OpsClient(exporter.ops_port, "wrong-" + TOKEN).get(FAILED)[0] == 401
    assert anonymous.post(f"{FAILED}/delete", {"ids": ids, "dry_run": True})[0] == 401
    assert operator.get(FAILED)[0] == 200
    assert OpsClient(exporter.ops_port, TOKEN, host="evil.example").get(FAILED)[0] == 400
    # And every bad input is a 400 naming what was wrong
    for query, key in (
        ("?colour=red", "colour"),
        ("?since=yesterday", "since"),
        ("?since=2026-12-07T10:00:00", "since"),
        ("?limit=1001", "limit"),
        ("?kind=lost", "kind"),
        ("?cursor=xyz", "cursor"),
    ):
        status, answer = operator.get(FAILED + query)
        assert (status, answer["key"]) == (400, key), query
    for body, key in (
        ({"ids": ids}, "dry_run"),
        ({"ids": ids, "filter": {}, "dry_run": True}, "body"),
        ({"filter": {"limit": 5000}, "dry_run": True}, "filter.limit"),
        ({"ids": ids, "dry_run": True, "colour": 1}, "colour"),
    ):
        status, answer = operator.post(f"{FAILED}/requeue", body)
        assert (status, answer["key"]) == (400, key), body
    status, answer, _ = operator.request(
        "POST", f"{FAILED}/delete", raw=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert (status, answer["key"]) == (400, "body")
    # And the server's own limits: a body over 1 MiB is refused unread, JSON only
    huge = {"Content-Type": "application/json", "Content-Length": str(2 * 1024 * 1024)}
    assert operator.request("POST", f"{FAILED}/delete", raw=b"", headers=huge)[0] == 413
    text = {"Content-Type": "text/plain"}
    assert operator.request("POST", f"{FAILED}/delete", raw=b"{}", headers=text)[0] == 415
    # And every write is audited: the stream and one log line each
    assert operator.post(f"{FAILED}/requeue", {"ids": ids[:1], "dry_run": True})[0] == 200
    done = operator.post(
        f"{FAILED}/delete", {"filter": {"task": "tests.always_fail"}, "dry_run": False}
    )
    assert done == (200, {"matched": 1, "deleted": 1, "skipped": {}})
    audit = redis_client.xrevrange("jobpilot:ops:audit")
    entries = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in audit]
    assert [(e["action"], e["dry_run"], e["client"]) for e in entries] == [
        ("delete", "false", "127.0.0.1"),
        ("requeue", "true", "127.0.0.1"),
    ]
    assert json.loads(entries[0]["selection"]) == {"filter": {"task": "tests.always_fail"}}
    assert json.loads(entries[0]["result"]) == {"matched": 1, "deleted": 1, "skipped": {}}
    assert json.loads(entries[1]["selection"]) == {"ids": ids[:1]}
    exporter_log = exporter.log()
    assert exporter_log.count("ops: ") == 2 and TOKEN not in exporter_log

    # With OPS_READ_OPEN=true reads need no token, writes still do; and with
    # FAILED_SHOW_ARGUMENTS=true the argument text is shown
    shown_env = {
        **worker_env,
        "OPS_TOKEN": TOKEN,
        "OPS_READ_OPEN": "true",
        "FAILED_SHOW_ARGUMENTS": "true",
    }
    open_reads = OpsClient(start_exporter(shown_env).ops_port)
    status, listing = open_reads.get(FAILED)
    assert status == 200 and SECRET not in json.dumps(listing)  # listings never show them
    retried = next(r.id for r in records(redis_client) if r.task == "tests.retry_without_exc")
    status, record = open_reads.get(f"{FAILED}/{retried}")
    assert status == 200 and SECRET in record["message"] and SECRET in record["traceback"]
    assert open_reads.post(f"{FAILED}/delete", {"ids": ids, "dry_run": True})[0] == 401
