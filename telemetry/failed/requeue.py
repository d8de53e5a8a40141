"""A record's message back on its queue: the message it becomes, and the key it goes to.

    requeuer = Requeuer(app, known_queues, PoisonPolicy.of(app.conf.accept_content, settings))
    prepared = requeuer.prepare(record, force=False)    # Prepared, or a skip reason
    requeuer.push(store, [prepared, ...])               # one REQUEUE script each, pipelined

The message goes back with its task id, arguments, routing and priority, and:

* ``retries`` 0, and no ``expires`` (an expired copy would put its id into every
  worker's revoked set for hours);
* a new ``x-jobpilot-published-at`` and delivery tag, and no ``redelivered``;
* ``x-jobpilot-requeue: <n>``, one more than the record's message had, so the
  duplicate-execution count tells the rerun from a redelivery;
* no ``traceparent``, and ``x-jobpilot-requeued-from`` holding the failed run's
  span as a traceparent (the message's own ``traceparent`` when the run span is
  unknown, as after a hard time limit): the rerun's run span starts a new trace
  with one link to it.

Records of a task in a group or a chord, or with link callbacks (``link``,
``link_error``), are skipped as ``in_canvas`` unless forced: the rerun would count
into a chord or a group twice, or fire its callbacks again. A chain step is
not skipped: the chain never went past the failed step, and the rerun carries it on.

The key is computed by kombu's own Redis channel (``_q_for_pri`` and
``_get_message_priority``, private methods of kombu 5.7, pinned in
``pyproject.toml``) with the app's key prefix, so the message lands on the same
priority sub-list a publish would use, and the ``REQUEUE`` script pushes it
there with ``LPUSH`` as kombu's ``_put`` does.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu.serialization import loads
from kombu.utils.json import dumps as kombu_dumps

from telemetry.deadletters.policy import PoisonPolicy
from telemetry.deadletters.validation import judge
from telemetry.failed.records import FailedRecord
from telemetry.failed.store import FailedStore
from telemetry.messages import (
    PUBLISHED_AT_HEADER,
    REQUEUE_HEADER,
    REQUEUED_FROM_HEADER,
    SAMPLED_FLAG,
    TRACEPARENT_HEADER,
    format_traceparent,
)

IN_CANVAS = "in_canvas"
INVALID_MESSAGE = "invalid_message"
UNKNOWN_QUEUE = "unknown_queue"
NOT_FOUND = "not_found"
#: Scripts sent per pipeline.
PUSH_BATCH = 200


@dataclass(frozen=True)
class Prepared:
    record: FailedRecord
    key: str
    message: str


def requeued_from(record: FailedRecord, headers: dict[str, Any]) -> str | None:
    """The failed run's span as a traceparent; the message's own when the span is unknown."""
    if record.trace_id and record.span_id:
        return format_traceparent(int(record.trace_id, 16), int(record.span_id, 16), SAMPLED_FLAG)
    original = headers.get(TRACEPARENT_HEADER)
    return original if isinstance(original, str) else None


def requeued_envelope(record: FailedRecord, envelope: dict[str, Any]) -> dict[str, Any]:
    """The message to publish again for ``record``, from its parsed envelope."""
    headers = dict(envelope["headers"])
    properties = dict(envelope["properties"])
    source = requeued_from(record, headers)
    count = headers.get(REQUEUE_HEADER)
    headers.pop(TRACEPARENT_HEADER, None)
    headers.pop("redelivered", None)
    headers.pop(REQUEUED_FROM_HEADER, None)
    headers.update(
        {
            "retries": 0,
            "expires": None,
            PUBLISHED_AT_HEADER: time.time(),
            REQUEUE_HEADER: (count if isinstance(count, int) else 0) + 1,
        }
    )
    if source is not None:
        headers[REQUEUED_FROM_HEADER] = source
    delivery = properties.get("delivery_info") or {}
    properties["delivery_info"] = {
        "exchange": delivery.get("exchange"),
        "routing_key": delivery.get("routing_key"),
    }
    properties["delivery_tag"] = str(uuid.uuid4())
    return {**envelope, "headers": headers, "properties": properties}


def in_canvas(envelope: dict[str, Any], accept: frozenset[str] | None) -> bool:
    """A group or chord member, or a task with link callbacks; the body decoded as kombu
    decodes it, by its content type (JSON, msgpack, ...)."""
    if envelope["headers"].get("group"):
        return True
    body = str(envelope.get("body"))
    try:
        data: bytes | str = (
            base64.b64decode(body)
            if envelope["properties"].get("body_encoding") == "base64"
            else body
        )
        embed = (
            loads(  # type: ignore[no-untyped-call]
                data, envelope["content-type"], envelope["content-encoding"], accept=accept
            )[2]
            or {}
        )
    except Exception:
        return False  # the worker refuses it as it refused it before: not a canvas matter
    return bool(embed.get("chord") or embed.get("callbacks") or embed.get("errbacks"))


class Requeuer:
    """Prepares and pushes requeues for ``app``'s broker."""

    def __init__(self, app: Celery, queues: Iterable[str] | None, policy: PoisonPolicy) -> None:
        """``queues``: where a message may go back (None: anywhere). ``policy``: what the
        app's worker accepts, which a requeued message must pass again."""
        self.app = app
        self.queues = None if queues is None else frozenset(queues)
        self.policy = policy
        self._channel: Any = None
        self._lock = threading.Lock()

    def _kombu_channel(self) -> Any:
        """A channel of the app's transport, for its key naming only (never for I/O)."""
        with self._lock:
            if self._channel is None:
                connection = self.app.connection_for_write()
                self._channel = connection.default_channel
            return self._channel

    def queue_key(self, queue: str, message: dict[str, Any]) -> str:
        """The list kombu's ``_put`` pushes ``message`` onto, key prefix included."""
        channel = self._kombu_channel()
        priority = channel._get_message_priority(message, reverse=False)
        return str(channel.global_keyprefix) + str(channel._q_for_pri(queue, priority))

    def prepare(self, record: FailedRecord, force: bool) -> Prepared | str:
        """The message and key to requeue ``record`` with, or why it is skipped."""
        if self.queues is not None and record.queue not in self.queues:
            return UNKNOWN_QUEUE
        policy = self.policy
        verdict = judge(record.raw_bytes(), policy.max_message_bytes, accept=policy.accept)
        if verdict.payload is None:
            return INVALID_MESSAGE
        if not force and in_canvas(verdict.payload, policy.accept):
            return IN_CANVAS
        # Only headers and properties the validation accepts change: still valid.
        message = requeued_envelope(record, verdict.payload)
        text = str(kombu_dumps(message))  # type: ignore[no-untyped-call]
        return Prepared(record, self.queue_key(record.queue, message), text)

    def push(self, store: FailedStore, prepared: Sequence[Prepared]) -> list[bool]:
        """Requeue each in one script (pipelined in batches); False where the record was gone."""
        script = store.requeue_script()
        done: list[bool] = []
        for start in range(0, len(prepared), PUSH_BATCH):
            batch = prepared[start : start + PUSH_BATCH]
            pipe = store.client.pipeline(transaction=False)
            for item in batch:
                script(
                    keys=[*store.keys.set_keys, item.key],
                    args=[item.record.id, item.message],
                    client=pipe,
                )
            done += [bool(reply) for reply in pipe.execute()]
        return done
