"""What the telemetry writes on task messages and reads back from them, declared once.

* ``x-jobpilot-published-at``: the publish time (Unix seconds), stamped on every
  publish by ``telemetry.install``; queue wait and the oldest message's age are
  measured from it.
* ``x-jobpilot-probe``: marks the readiness probe's own messages, which are
  neither counted nor traced.
* ``traceparent``: the W3C trace context of the publish, parsed and written
  here directly, with no propagator loop on the hot path.
* ``x-jobpilot-requeue``: how many times the message was put back from the
  failed-work set (``telemetry.failed.requeue``); a rerun is not a duplicate.
* ``x-jobpilot-requeued-from``: the failed run's span, as a traceparent; the
  rerun's run span links to it.
* ``health_check_task``: the readiness probe's task name.

One more key travels with a delivery but never on a message: ``RUN_SPAN``, which
a worker's main process writes into each delivery's request when it receives
it (``telemetry.tracing.run_ids``). Celery hands the request to the process that
runs the task, so the main, pool and export processes agree on the ``run``
span's ids without building anything. It starts with an underscore, so the
failed-work capture (which keeps a message's headers) leaves it out, and each
receipt writes it anew: a retry, a redelivery or a requeue gets ids of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PUBLISHED_AT_HEADER = "x-jobpilot-published-at"
PROBE_HEADER = "x-jobpilot-probe"
TRACEPARENT_HEADER = "traceparent"
REQUEUE_HEADER = "x-jobpilot-requeue"
REQUEUED_FROM_HEADER = "x-jobpilot-requeued-from"
HEALTH_TASK = "health_check_task"
#: The run span's ids in a delivery's request: a tuple of
#: ``(trace id, span id, flags, parent span id or 0, recording)`` (``flags``: the
#: W3C trace flags; ``recording``: whether the sampler records it), then, only
#: when the sampler said more than the usual, its trace state header and its
#: attributes.
RUN_SPAN = "_jobpilot_run_span"
#: The positions in a ``RUN_SPAN`` tuple.
RUN_TRACE_ID, RUN_SPAN_ID, RUN_FLAGS, RUN_PARENT_ID, RUN_RECORDING = range(5)

TRACEPARENT_LENGTH = 55
#: The W3C trace-flags bit of a sampled trace.
SAMPLED_FLAG = 0x01


def parse_traceparent(traceparent: Any) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a W3C ``00-<32 hex>-<16 hex>-<2 hex>``; None if malformed.

    Parsed directly: no OpenTelemetry call on the hot path, and it works with
    export disabled. Zero ids are left for the caller to judge.
    """
    if not isinstance(traceparent, str) or len(traceparent) != TRACEPARENT_LENGTH:
        return None
    try:
        return (
            int(traceparent[3:35], 16),
            int(traceparent[36:52], 16),
            int(traceparent[53:55], 16),
        )
    except ValueError:
        return None


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def sampled_trace_id(headers: Mapping[str, Any] | None) -> str | None:
    """The trace id of a message's ``traceparent``, if it is sampled."""
    parsed = parse_traceparent((headers or {}).get(TRACEPARENT_HEADER))
    if parsed is None:
        return None
    trace_id, _, flags = parsed
    if not flags & SAMPLED_FLAG or not trace_id:
        return None
    return f"{trace_id:032x}"


def run_span_ids(fields: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """The ``RUN_SPAN`` ids in a request's fields, or None. Only a tuple counts: a message
    that carries the key from the wire decodes to a list (JSON, msgpack), and is ignored."""
    run = (fields or {}).get(RUN_SPAN)
    return run if type(run) is tuple else None


def exemplar_trace_id(fields: Mapping[str, Any] | None) -> str | None:
    """The trace id an exemplar names: of the delivery's run span when the worker drew
    its ids, else of the message's ``traceparent``; only when sampled."""
    run = run_span_ids(fields)
    if run is None:
        return sampled_trace_id(fields)
    return f"{run[RUN_TRACE_ID]:032x}" if run[RUN_FLAGS] & SAMPLED_FLAG else None
