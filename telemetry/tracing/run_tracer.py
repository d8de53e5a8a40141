"""Each task's run span, made around Celery's tracer of that task in the process that runs it.

    tracer = RunTracer(app, provider, relay, system="redis", record_args=False)
    tracer.wrap()            # a pool process, after the fork: every task's ``__trace__``
    tracer.ensure(task)      # solo and threads pools: before each delivery runs
    tracer.unwrap()          # each task's tracer as Celery built it

Celery runs a task through the tracer ``build_tracer`` made for it and keeps as
``task.__trace__`` (``celery.app.trace``): a prefork pool process builds them
all at its start, just before ``worker_process_init``; a worker's consumer
builds them at each of its starts, for the solo and threads pools. This
module puts one function around that tracer, so a task's run span costs one
call, not two ``task_prerun``/``task_postrun`` dispatches (about 20k
instructions each, callgrind). ``task.__trace__`` and the tracer's signature
``(uuid, args, kwargs, request)`` returning ``(R, I, T, Rstr)`` are Celery's
own, unchanged since 4.0; Celery is bounded to the minor releases the
real-worker tests hold the spans on (packages/jobpilot-telemetry/pyproject.toml).
The wrapper:

* reads the span's ids from the request (``telemetry.messages.RUN_SPAN``), drawn
  by the main process at receipt, or draws them here when they are missing
  (a Request class that is not ours);
* makes the span current (a :class:`telemetry.tracing.run_span.RunSpan`, which
  builds nothing until read), calls Celery's tracer, and ends the span with the
  outcome its state names (``telemetry.tracing.attributes.STATE_OUTCOMES``);
* never fails a task: its own failures are logged once a minute and skipped.

``task_failure`` and ``task_retry`` receivers, sent only on those paths,
record the exception event and error status, or the retry event, on the run
span current in their thread. The readiness probe's health-check task makes no spans: a
trace every probe interval per worker would bury the real ones. A delivery
that Celery skips as already done (``worker_deduplicate_successful_tasks``)
makes none either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import task_failure, task_retry
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from telemetry import receivers
from telemetry.delivery.observers import FAILED, RETRIED
from telemetry.log_throttle import LogThrottle
from telemetry.messages import (
    HEALTH_TASK,
    REQUEUED_FROM_HEADER,
    RUN_SPAN,
    TRACEPARENT_HEADER,
)
from telemetry.tracing.attributes import (
    DESTINATION,
    INSTRUMENTATION,
    MAX_ARGS_LENGTH,
    MESSAGE_ID,
    OPERATION,
    PROCESS,
    STATE_OUTCOMES,
    SYSTEM,
    TASK_ARGS,
    TASK_KWARGS,
    TASK_NAME,
    TASK_RETRIES,
)
from telemetry.tracing.run_ids import RunIds, remote_parent
from telemetry.tracing.run_span import Relay, RunSpan

logger = logging.getLogger("telemetry.tracing")

Tracer = Callable[..., Any]
#: Marks a tracer made here, so it is wrapped once.
WRAPPED = "_jobpilot_run_tracer"


class RunTracer:
    """The run spans of one process that runs tasks; see the module docstring."""

    def __init__(
        self,
        app: Celery,
        provider: TracerProvider,
        relay: Relay | None,
        system: str,
        record_args: bool,
    ) -> None:
        self.app = app
        self.relay = relay
        self.system = system
        self.record_args = record_args
        self.draw = RunIds(provider)
        self.scope = InstrumentationScope(INSTRUMENTATION)
        self._log = LogThrottle()
        #: task name -> (Celery's tracer, ours), to put Celery's back.
        self._wrapped: dict[str, tuple[Tracer, Tracer]] = {}
        self.receivers: tuple[receivers.Receiver, ...] = (
            (task_failure, self.on_task_failure, "telemetry.trace.task_failure"),
            (task_retry, self.on_task_retry, "telemetry.trace.task_retry"),
        )

    def wrap(self) -> None:
        receivers.connect(self.receivers)
        for task in list(self.app.tasks.values()):
            self.ensure(task)

    def unwrap(self) -> None:
        receivers.disconnect(self.receivers)
        for name, (celerys, ours) in self._wrapped.items():
            task = self.app.tasks.get(name)
            if task is not None and task.__trace__ is ours:
                task.__trace__ = celerys
        self._wrapped.clear()

    def ensure(self, task: Any) -> None:
        """Wrap ``task``'s tracer, unless it has none yet or is wrapped already."""
        celerys = task.__trace__
        if celerys is None or getattr(celerys, WRAPPED, False) or task.name == HEALTH_TASK:
            return
        ours = self._traced(task.name, celerys)
        self._wrapped[task.name] = (celerys, ours)
        task.__trace__ = ours

    def _traced(self, name: str, celerys: Tracer) -> Tracer:
        start, finish = self._start, self._finish

        def traced(uuid: str, args: Any, kwargs: Any, request: Any = None) -> Any:
            span = start(name, uuid, args, kwargs, request)
            if span is None:
                return celerys(uuid, args, kwargs, request)
            token = otel_context.attach(trace.set_span_in_context(span))
            result = None
            try:
                result = celerys(uuid, args, kwargs, request)
                return result
            finally:
                otel_context.detach(token)
                finish(span, result)

        setattr(traced, WRAPPED, True)
        return traced

    def _start(self, name: str, uuid: str, args: Any, kwargs: Any, request: Any) -> RunSpan | None:
        try:
            if request is None:
                return None
            ids = request.get(RUN_SPAN)
            if type(ids) is not tuple:
                ids = request[RUN_SPAN] = self.draw(
                    request.get(TRACEPARENT_HEADER),
                    f"run/{name}",
                    lambda: self._attributes(name, uuid, request),
                )
            delivery = request.get("delivery_info") or {}
            span = RunSpan(
                ids,
                name,
                uuid,
                str(delivery.get("routing_key") or ""),
                int(request.get("retries") or 0),
                self.system,
                self.relay,
                self.scope,
            )
            if span.is_recording():
                self._annotate(span, args, kwargs, request)
            return span
        except Exception as exc:
            self._failed("start", exc)
            return None

    def _attributes(self, name: str, uuid: str, request: Any) -> dict[str, Any]:
        delivery = request.get("delivery_info") or {}
        return {
            SYSTEM: self.system,
            DESTINATION: str(delivery.get("routing_key") or ""),
            OPERATION: PROCESS,
            MESSAGE_ID: uuid,
            TASK_NAME: name,
            TASK_RETRIES: int(request.get("retries") or 0),
        }

    def _annotate(self, span: RunSpan, args: Any, kwargs: Any, request: Any) -> None:
        """The link to the failed run a requeue came from, and the arguments when asked."""
        requeued_from = request.get(REQUEUED_FROM_HEADER)
        if requeued_from is not None:
            failed_run = remote_parent(requeued_from)
            if failed_run is not None:
                trace_id, span_id, flags = failed_run
                span.add_link(SpanContext(trace_id, span_id, True, TraceFlags(flags)))
        if self.record_args:
            span.set_attribute(TASK_ARGS, repr(args)[:MAX_ARGS_LENGTH])
            span.set_attribute(TASK_KWARGS, repr(kwargs)[:MAX_ARGS_LENGTH])

    def _finish(self, span: RunSpan, result: Any) -> None:
        try:
            if result is None:
                state = None  # Celery's tracer raised
            else:
                info, runtime = result[1], result[2]
                if info is None and runtime is None:
                    return  # skipped as already done: nothing ran
                state = "SUCCESS" if info is None else info.state
            span.finish(STATE_OUTCOMES.get(str(state), FAILED))
        except Exception as exc:
            self._failed("finish", exc)

    def on_task_failure(
        self, task_id: str | None = None, exception: BaseException | None = None, **_: Any
    ) -> None:
        span = _running(task_id)
        if span is None or exception is None:
            return
        span.record_exception(exception)
        span.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        span.outcome = FAILED

    def on_task_retry(self, request: Any = None, reason: Any = None, **_: Any) -> None:
        span = _running(getattr(request, "id", None))
        if span is None:
            return
        span.outcome = RETRIED
        if reason is not None:
            span.add_event("retry", {"reason": type(reason).__name__})

    def _failed(self, step: str, exc: Exception) -> None:
        if self._log.due():
            logger.warning("run span %s failed: %s: %s", step, type(exc).__name__, exc)


def _running(task_id: str | None) -> RunSpan | None:
    """The run span of ``task_id``, current in this thread while its tracer runs (a
    threads pool runs several at once), or None."""
    span = trace.get_current_span()
    if isinstance(span, RunSpan) and span.message_id == task_id:
        return span
    return None
