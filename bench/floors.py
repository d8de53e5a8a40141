"""Cheaper stand-ins for the ``run`` span handlers, loaded into a benchmark worker with
``--include bench.floor_plugin``: the least a pool-process hook can cost.

``BENCH_FLOOR`` chooses the stand-in, in every pool process, in place of the
``run`` span's four receivers (``telemetry.trace_wiring.PoolProcessWiring``):

* ``signals``: ``task_prerun`` and ``task_postrun`` receivers that do nothing, the
  cheapest hook Celery offers a pool process for a task's start and end;
* ``context``: the same pair making the task's trace context current and no
  span: the remote parent from ``traceparent`` and a span id derived from the
  task id, as a non-recording span attached while the task runs. That is what a
  pool process would still pay if the ``run`` span were written elsewhere (the
  main process sees every start and finish) while nested work kept joining it.

The worker is otherwise the ``tracing`` variant's: its span export process
runs, the main process keeps its own spans, publishes in tasks are still traced.
Only the benchmark's workers load it; the worker itself never imports it.
"""

from __future__ import annotations

import hashlib
import os
from contextvars import Token
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from telemetry.lifecycle import TRACEPARENT_HEADER
from telemetry.spans import remote_parent
from telemetry.trace_wiring import RUN_SPAN_RECEIVERS
from telemetry.worker import SIGNAL_HANDLERS, receiver_uid

FLOORS = ("signals", "context")
#: The telemetry's own process-init receiver must run first in each pool process: it
#: connects the receivers replaced here.
TELEMETRY_PROCESS_INIT = next(
    receiver_uid(handler) for signal, handler in SIGNAL_HANDLERS if signal is worker_process_init
)
FLOOR_UIDS = ("bench.floor.prerun", "bench.floor.postrun")


def chosen_floor() -> str:
    floor = os.environ.get("BENCH_FLOOR", "")
    if floor not in FLOORS:
        raise SystemExit(f"BENCH_FLOOR must be one of {', '.join(FLOORS)}, not {floor!r}")
    return floor


def _do_nothing(**_: Any) -> None:
    return


class CurrentContext:
    """The ``context`` floor: the task's trace context made current, no span recorded."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token[Context]] = {}

    def on_task_prerun(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task_id is None or task is None:
            return
        derived = int.from_bytes(hashlib.blake2b(task_id.encode(), digest_size=16).digest())
        parent = remote_parent(getattr(task.request, TRACEPARENT_HEADER, None))
        span_context = SpanContext(
            parent.trace_id if parent is not None else derived,
            derived & 0xFFFF_FFFF_FFFF_FFFF or 1,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        span = NonRecordingSpan(span_context)
        self._tokens[task_id] = otel_context.attach(trace.set_span_in_context(span))

    def on_task_postrun(self, task_id: str | None = None, **_: Any) -> None:
        token = self._tokens.pop(task_id or "", None)
        if token is not None:
            otel_context.detach(token)


def _on_worker_process_init(**_: Any) -> None:
    for signal, uid in RUN_SPAN_RECEIVERS:
        signal.disconnect(dispatch_uid=uid)
    if chosen_floor() == "signals":
        prerun, postrun = _do_nothing, _do_nothing
    else:
        current = CurrentContext()
        prerun, postrun = current.on_task_prerun, current.on_task_postrun
    task_prerun.connect(prerun, weak=False, dispatch_uid=FLOOR_UIDS[0])
    task_postrun.connect(postrun, weak=False, dispatch_uid=FLOOR_UIDS[1])


def _on_worker_init(**_: Any) -> None:
    """After the telemetry's own ``worker_init`` receiver (connected at ``import worker``):
    connect behind its process-init receiver, or refuse to start."""
    if not any(key[0] == TELEMETRY_PROCESS_INIT for key, _ in worker_process_init.receivers):
        raise SystemExit("bench.floors: load it into a worker with telemetry on")
    worker_process_init.connect(
        _on_worker_process_init, weak=False, dispatch_uid="bench.floor.process_init"
    )


def install() -> None:
    """Check ``BENCH_FLOOR`` and connect; Celery imports ``--include`` modules before it
    sends ``worker_init``."""
    chosen_floor()
    worker_init.connect(_on_worker_init, weak=False, dispatch_uid="bench.floor.worker_init")
