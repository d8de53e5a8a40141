"""The common ``run`` span as one fixed binary record: what crosses the hop for nearly every task.

    body = pack_run(ids, start, end, outcome, retries, system, queue, task, message_id)
    relay.send_record(body)          # in the pool process, as the task ends
    row = unpack_run(body)           # in the export process: the span's full row (``rows.row``)
    span = RecordSpan(body, resource, scope)   # or, for the contained encoder, the record itself

Most run spans are left alone by the task's code: no attribute, event, link,
status or name of its own, no arguments recorded, no link to a failed run, and
nothing added by the sampler. Such a span differs from the next only in its
ids, times, retries, outcome, queue, task and message id, so that is all that
is sent: packed by one ``struct`` call (about a sixth of what ``json.dumps`` of
its row costs, in instructions) and expanded by the export process into the
very row the span would have sent. Every other span goes as a JSON row
(``telemetry.tracing.export.rows``). The body of a datagram that holds a record
starts with :data:`RUN_RECORD`; a JSON body starts with ``[``.
"""

from __future__ import annotations

import struct
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags

from telemetry.delivery.observers import OUTCOMES
from telemetry.tracing.attributes import (
    DESTINATION,
    INSTRUMENTATION,
    MESSAGE_ID,
    OPERATION,
    PROCESS,
    SYSTEM,
    TASK_NAME,
    TASK_OUTCOME,
    TASK_RETRIES,
)
from telemetry.tracing.export.rows import SpanDecodeError

#: The first byte of a record's body.
RUN_RECORD = b"\x01"
#: Trace id (high and low halves), span id, parent span id (0: none), trace flags,
#: outcome (its index in OUTCOMES), start and end (ns), retries, and the sizes of the
#: UTF-8 strings that follow: messaging system, queue, task name, message id.
FIXED = struct.Struct("<QQQQBBqqqHHHH")
_LOW = (1 << 64) - 1
_OUTCOME_INDEX = {outcome: index for index, outcome in enumerate(OUTCOMES)}
_CONSUMER = SpanKind.CONSUMER.value
_UNSET = StatusCode.UNSET.value
#: The scope a run span's row names: ``InstrumentationScope(INSTRUMENTATION)``'s row.
SCOPE_ROW: list[Any] = [INSTRUMENTATION, None, "", {}]


def pack_run(
    trace_id: int,
    span_id: int,
    flags: int,
    parent_id: int,
    outcome: str,
    start: int,
    end: int,
    retries: int,
    system: bytes,
    queue: bytes,
    task: bytes,
    message_id: bytes,
) -> bytes:
    """A record's body; ``struct.error`` when a number does not fit (send a row instead)."""
    return b"".join(
        (
            RUN_RECORD,
            FIXED.pack(
                trace_id >> 64,
                trace_id & _LOW,
                span_id,
                parent_id,
                flags,
                _OUTCOME_INDEX[outcome],
                start,
                end,
                retries,
                len(system),
                len(queue),
                len(task),
                len(message_id),
            ),
            system,
            queue,
            task,
            message_id,
        )
    )


def unpack_run(body: bytes) -> list[Any]:
    """The row (``telemetry.tracing.export.rows.ROW``) a record stands for."""
    if len(body) < 1 + FIXED.size:
        raise SpanDecodeError("a run record shorter than its fixed part")
    (high, low, span_id, parent_id, flags, outcome, start, end, retries,
     *sizes) = FIXED.unpack_from(body, 1)  # fmt: skip
    if 1 + FIXED.size + sum(sizes) != len(body) or outcome >= len(OUTCOMES):
        raise SpanDecodeError("a run record whose sizes or outcome do not match")
    at = 1 + FIXED.size
    texts = []
    for size in sizes:
        texts.append(body[at : at + size].decode())
        at += size
    system, queue, task, message_id = texts
    return [
        f"run/{task}",
        high << 64 | low,
        span_id,
        flags,
        "",
        parent_id or None,
        bool(parent_id),
        _CONSUMER,
        start,
        end,
        _UNSET,
        None,
        {
            SYSTEM: system,
            DESTINATION: queue,
            OPERATION: PROCESS,
            MESSAGE_ID: message_id,
            TASK_NAME: task,
            TASK_RETRIES: retries,
            TASK_OUTCOME: OUTCOMES[outcome],
        },
        0,
        [],
        0,
        [],
        0,
        list(SCOPE_ROW),
    ]


#: What the batch processor reads of a record: sampled (see :class:`RecordSpan`).
SAMPLED_CONTEXT = SpanContext(1, 1, False, TraceFlags(TraceFlags.SAMPLED))


class RecordSpan:
    """A run record on its way through the export process's batch processor to the
    contained encoder (``telemetry.tracing.export.encoder``).

    Checked when made, so a malformed record is refused on arrival, not in a
    batch. The batch processor reads only ``context``, to keep sampled spans: a
    record is sent only for a sampled span. :meth:`readable` is the SDK span it
    stands for.
    """

    __slots__ = ("body", "context", "fields", "resource", "scope")

    def __init__(self, body: bytes, resource: Resource, scope: InstrumentationScope) -> None:
        if len(body) < 1 + FIXED.size or body[:1] != RUN_RECORD:
            raise SpanDecodeError("not a run record")
        self.fields = FIXED.unpack_from(body, 1)
        sizes = self.fields[-4:]
        if 1 + FIXED.size + sum(sizes) != len(body) or self.fields[5] >= len(OUTCOMES):
            raise SpanDecodeError("a run record whose sizes or outcome do not match")
        at = 1 + FIXED.size
        for size in sizes:  # each UTF-8: a UnicodeDecodeError is a ValueError to the decoder
            body[at : at + size].decode()
            at += size
        self.body = body
        self.resource = resource
        self.scope = scope
        self.context = SAMPLED_CONTEXT

    def readable(self, decode: Any) -> ReadableSpan:
        """The SDK span, through the row decoder's ``span(fields, resource)``."""
        return decode(tuple(unpack_run(self.body)), self.resource)  # type: ignore[no-any-return]
