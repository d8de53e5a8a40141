"""What a requeued message becomes, and where it goes: the key kombu's own put uses."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from kombu import Queue

from telemetry.deadletters.policy import DEFAULT_POLICY
from telemetry.failed.records import EXHAUSTED_REASON, FailedRecord, Kind
from telemetry.failed.requeue import IN_CANVAS, INVALID_MESSAGE, UNKNOWN_QUEUE, Prepared, Requeuer
from tests.conftest import redis_url
from tests.support.messages import envelope

TRACE_ID, SPAN_ID = "4f802c59e9dbf37de356d17c4804decf", "b2bcc2f863ed3f08"
ORIGINAL_PARENT = f"00-{'1' * 32}-{'2' * 16}-01"


@pytest.fixture
def prefixed_app() -> Iterator[Celery]:
    app = Celery("requeue-test", broker=redis_url(), set_as_current=False)
    app.conf.broker_transport_options = {"global_keyprefix": "pfx:", "priority_steps": [0, 5, 9]}
    app.conf.task_queues = [Queue("agents")]
    yield app
    app.close()


def record_of(message: dict[str, object], **fields: object) -> FailedRecord:
    return FailedRecord.new(
        Kind.EXHAUSTED,
        queue="agents",
        task="briefing_compile",
        task_id=str(message["headers"]["id"]),  # type: ignore[index]
        reason=EXHAUSTED_REASON,
        raw=json.dumps(message),
        **fields,
    )


def test_the_message_goes_back_as_a_new_delivery_linked_to_the_failed_run(
    prefixed_app: Celery,
) -> None:
    # Given a failed message: a third retry, with an expiry, a trace and a redelivery mark
    message = envelope(
        queue="agents",
        retries=3,
        expires="2026-01-01T00:00:00+00:00",
        traceparent=ORIGINAL_PARENT,
        redelivered=True,
        argsrepr="('topic', ['some text'])",
    )
    message["properties"]["delivery_info"]["redelivered"] = True
    message["properties"]["priority"] = 6
    record = record_of(message, trace_id=TRACE_ID, span_id=SPAN_ID)
    # When it is prepared for a requeue
    prepared = Requeuer(prefixed_app, ["agents"], DEFAULT_POLICY).prepare(record, force=False)
    assert isinstance(prepared, Prepared)
    again = json.loads(prepared.message)
    headers, properties = again["headers"], again["properties"]
    # Then its id, arguments, routing and priority are the original's
    assert headers["id"] == message["headers"]["id"] and again["body"] == message["body"]
    assert headers["argsrepr"] == message["headers"]["argsrepr"]
    assert properties["delivery_info"] == {"exchange": "agents", "routing_key": "agents"}
    assert properties["priority"] == 6
    # And it starts over: retries 0, no expiry, a new tag and publish time, no redelivery mark
    assert headers["retries"] == 0 and headers["expires"] is None
    assert properties["delivery_tag"] != message["properties"]["delivery_tag"]
    assert headers["x-jobpilot-published-at"] > 0 and "redelivered" not in headers
    # And it is marked as a requeue, with no parent, linked to the failed run's span
    assert headers["x-jobpilot-requeue"] == 1 and "traceparent" not in headers
    assert headers["x-jobpilot-requeued-from"] == f"00-{TRACE_ID}-{SPAN_ID}-01"
    # And a second requeue counts on; without a run span it links the message's own parent
    twice = record_of(
        json.loads(prepared.message) | {"headers": {**headers, "traceparent": ORIGINAL_PARENT}}
    )
    again_twice = Requeuer(prefixed_app, None, DEFAULT_POLICY).prepare(twice, force=False)
    assert isinstance(again_twice, Prepared)
    twice_headers = json.loads(again_twice.message)["headers"]
    assert twice_headers["x-jobpilot-requeue"] == 2
    assert twice_headers["x-jobpilot-requeued-from"] == ORIGINAL_PARENT


def test_the_key_is_the_one_kombus_put_pushes_to(
    prefixed_app: Celery, redis_client: redis.Redis
) -> None:
    requeuer = Requeuer(prefixed_app, None, DEFAULT_POLICY)
    for priority in (0, 3, 6, 9):
        message = envelope(queue="agents")
        message["properties"]["priority"] = priority
        redis_client.flushdb()
        with prefixed_app.connection_for_write() as connection:
            connection.default_channel._put("agents", message)
        (key,) = redis_client.keys("pfx:agents*")
        assert requeuer.queue_key("agents", message) == key.decode()


def test_canvas_members_unknown_queues_and_invalid_messages_are_skipped(
    prefixed_app: Celery,
) -> None:
    requeuer = Requeuer(prefixed_app, ["agents"], DEFAULT_POLICY)
    chord = base64.b64encode(b'[[], {}, {"chord": {"task": "cb"}}]').decode()
    linked = base64.b64encode(b'[[], {}, {"callbacks": [{"task": "cb"}]}]').decode()
    chained = base64.b64encode(b'[[], {}, {"chain": [{"task": "next"}]}]').decode()
    grouped = envelope(queue="agents", group="g-1")
    assert requeuer.prepare(record_of(grouped), force=False) == IN_CANVAS
    assert isinstance(requeuer.prepare(record_of(grouped), force=True), Prepared)
    for body in (chord, linked):
        message = envelope(queue="agents")
        message["body"] = body
        assert requeuer.prepare(record_of(message), force=False) == IN_CANVAS
    message = envelope(queue="agents")
    message["body"] = chained
    assert isinstance(requeuer.prepare(record_of(message), force=False), Prepared)
    elsewhere = FailedRecord.new(
        Kind.DEAD_LETTER, queue="nowhere", task=None, task_id=None, reason="x", raw="{}"
    )
    assert requeuer.prepare(elsewhere, force=False) == UNKNOWN_QUEUE
    garbage = FailedRecord.new(
        Kind.DEAD_LETTER, queue="agents", task=None, task_id=None, reason="not_json", raw="nope"
    )
    assert requeuer.prepare(garbage, force=False) == INVALID_MESSAGE
