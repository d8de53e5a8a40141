"""What is exhausted, what a pool process's record holds, and what the API never shows."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from billiard.exceptions import Terminated, WorkerLostError
from celery import Celery
from celery.app.task import Context
from celery.exceptions import (
    Ignore,
    MaxRetriesExceededError,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
)
from celery.worker.request import Request
from kombu.transport.virtual.base import Message

from telemetry.delivery.observers import FAILED, REQUEUED, RETRIED
from telemetry.failed.capture import (
    envelope_from_context,
    exhausted_in_pool,
    exhausted_outcome,
    record_in_pool,
)
from telemetry.failed.records import MAX_MESSAGE_BYTES, MAX_TRACEBACK_BYTES, FailedRecord, Kind
from telemetry.failed.redaction import public_envelope, redact
from tests.conftest import redis_url
from tests.support.messages import envelope


@pytest.mark.parametrize(
    ("exception", "final"),
    [
        (ValueError("x"), True),
        (MaxRetriesExceededError("Can't retry"), True),
        (SoftTimeLimitExceeded(), True),
        (TimeLimitExceeded(1), False),  # the main process judges hard limits
        (Reject("r", requeue=False), False),
        (Retry(), False),
        (Ignore(), False),
        (WorkerLostError(), False),
        (Terminated(), False),
        (MemoryError(), False),
    ],
)
def test_what_a_pool_process_keeps(exception: BaseException, final: bool) -> None:
    assert exhausted_in_pool(exception) is final


def test_only_the_trace_of_a_delivered_message_is_recorded() -> None:
    class Task:
        name = "t"
        request = Context({"id": "1"}, called_directly=True)

    task = Task()
    assert record_in_pool(task, ValueError(), None) is None  # the worker's Request handlers
    task.request = Context({"id": "1", "is_eager": True}, called_directly=False)
    assert record_in_pool(task, ValueError(), None) is None  # apply(): the caller gets it
    task.request = Context(
        {"id": "1", "delivery_info": {"routing_key": "q"}}, called_directly=False
    )
    kept = record_in_pool(task, ValueError("boom"), None)
    assert kept is not None and (kept.queue, kept.message) == ("q", "boom")


def test_what_the_main_process_counts() -> None:
    assert exhausted_outcome(FAILED, ValueError()) and exhausted_outcome(
        FAILED, TimeLimitExceeded(1)
    )
    assert not exhausted_outcome(FAILED, Reject("r", requeue=False))
    assert not exhausted_outcome(FAILED, WorkerLostError())
    assert not exhausted_outcome(REQUEUED, TimeLimitExceeded(1))
    assert not exhausted_outcome(RETRIED, ValueError())


@pytest.fixture
def channel() -> Iterator[object]:
    app = Celery("capture-test", broker=redis_url(), set_as_current=False)
    with app.connection_for_write() as connection:
        yield connection.default_channel
    app.close()


def test_the_pool_processs_envelope_is_the_original_message(channel: object) -> None:
    # Given a message as kombu's Redis transport delivers it, with a canvas around the task
    body = json.dumps(
        [
            ["a", 1],
            {"k": [2, 3]},
            {"callbacks": None, "errbacks": None, "chain": [{"task": "next"}], "chord": None},
        ]
    )
    original = envelope(
        task="send_invoice",
        body=body.encode(),
        retries=2,
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    )
    app = Celery("capture-test", set_as_current=False)

    @app.task(name="send_invoice")
    def send_invoice(*args: object, **kwargs: object) -> None: ...

    request = Request(
        Message(json.loads(json.dumps(original)), channel=channel), app=app, task=send_invoice
    )
    # When Celery's pool process builds the task's request context from it (fast_trace_task)
    fields = dict(request.request_dict)
    args, kwargs, embed = json.loads(body)
    fields.update({"args": args, "kwargs": kwargs, "hostname": "w@h", "is_eager": False}, **embed)
    context = Context(fields, args=args, called_directly=False, kwargs=kwargs)
    # Then the envelope rebuilt from the context is the original, byte for byte where kombu's JSON agrees
    rebuilt = json.loads(envelope_from_context(dict(vars(context))))
    assert rebuilt["headers"] == original["headers"]
    assert rebuilt["properties"] == original["properties"]
    assert rebuilt["content-type"] == original["content-type"]
    assert json.loads(base64.b64decode(rebuilt["body"])) == json.loads(body)


def test_argument_text_of_max_retries_exceeded_is_replaced_by_counts() -> None:
    message = "Can't retry t[6d03] args:('s3cret', {'card': '4111'}) kwargs:{'pin': 1234}"
    assert redact(message, (2, 1)) == "Can't retry t[6d03] args:<2 args> kwargs:<1 kwargs>"
    traceback = (
        'Traceback (most recent call last):\n  File "t.py", line 1, in run\n'
        "    raise self.retry()\ncelery.exceptions.MaxRetriesExceededError: "
        + message
        + "\n  more\n"
    )
    shown = redact(traceback, (2, 1))
    assert (
        shown is not None and "s3cret" not in shown and "4111" not in shown and "1234" not in shown
    )
    assert shown.endswith("args:<2 args> kwargs:<1 kwargs>")
    assert redact("ValueError: args: are fine", (1, 0)) == "ValueError: args: are fine"
    assert redact(None, None) is None


def test_the_envelope_shown_has_no_body_or_argument_reprs() -> None:
    shown = public_envelope(envelope(argsrepr="('s3cret',)", kwargsrepr="{}"))
    assert "body" not in shown and "argsrepr" not in shown["headers"]
    assert "kwargsrepr" not in shown["headers"] and shown["headers"]["task"] == "briefing_compile"
    assert public_envelope("not a dict") is None


def test_messages_and_tracebacks_are_cut_to_their_limits() -> None:
    record = FailedRecord.new(
        Kind.EXHAUSTED,
        queue="q",
        task="t",
        task_id="i",
        reason="exhausted",
        raw="",
        message="é" * 5000,
        traceback="line\n" * 10_000 + "ValueError: the end",
    )
    assert record.message is not None and len(record.message.encode()) <= MAX_MESSAGE_BYTES
    assert record.traceback is not None and len(record.traceback.encode()) <= MAX_TRACEBACK_BYTES
    assert record.traceback.endswith("ValueError: the end")
    assert FailedRecord.from_json(record.id, record.to_json()) == record
