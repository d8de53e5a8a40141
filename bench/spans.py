"""What one consumer span costs a task, in-process (``python -m bench --suite spans``).

A real task of the app runs through the tracer Celery builds for it in a pool
process, with the request a pool process gets: the headers and properties
Celery builds for the message (time limits included), the delivery info, a
``traceparent``, and the run span's ids as the main process draws them at
receipt (drawn for every set alike). Handler sets:

* ``none``: Celery's tracer alone, the floor;
* ``lean``: this project's run spans (``telemetry.tracing.run_tracer``), wired by
  :class:`telemetry.tracing.wiring.RunSpanWiring` as in a pool process, with a
  relay sending each span on a socket pair (``telemetry.tracing.export.relay``);
* ``upstream``: OpenTelemetry's ``CeleryInstrumentor``, when
  ``opentelemetry-instrumentation-celery`` is installed.

``upstream`` runs on an SDK provider whose batch processor hands its spans to an
exporter that encodes them as OTLP protobuf and drops the bytes: what a pool
process does with them, minus the POST. ``lean`` leaves that encoding to the
worker's export process; its socket is read back outside the timed region. A
round times ``TASKS_PER_ROUND`` tasks per set, in a shuffled order, with the
batch processor's flush inside the timed region; CPU time is
``time.process_time`` (all threads). Figures are medians over the rounds:

* ``added_us_per_task``: what a set costs the task's own process, above ``none``;
* ``encode_us_per_span``: OTLP protobuf encoding of the set's spans, in 512-span
  batches, with the SDK's encoder, in the process ``encoded_in`` names (for
  ``lean``, the export process, from the decoded rows);
* ``handler_us_per_task``: the task's process's cost without OTLP encoding.
"""

from __future__ import annotations

import contextlib
import functools
import random
import socket
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery.app.trace import build_tracer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from bench.tasks import bench_noop
from telemetry.extensions import Extensions
from telemetry.messages import RUN_SPAN, TRACEPARENT_HEADER
from telemetry.tracing.export.decoder import SpanDecoder
from telemetry.tracing.export.relay import (
    MAX_DATAGRAM_BYTES,
    SOCKET_BUFFER_BYTES,
    DropCounter,
    SpanRelay,
)
from telemetry.tracing.run_ids import RunIds
from telemetry.tracing.wiring import RunSpanWiring
from worker.celery_app import app

TASKS_PER_ROUND = 2000
ENCODE_BATCH = 512
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class EncodingDiscarder(SpanExporter):
    """Encodes every batch as the OTLP/HTTP exporter would, then drops it."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def no_datagrams() -> list[bytes]:
    return []


@dataclass(frozen=True)
class HandlerSet:
    """Connects and disconnects one set of span receivers."""

    name: str
    connect: Callable[[], None]
    disconnect: Callable[[], None]
    #: Reads back what the set sent to an export process (outside the timing).
    sent: Callable[[], list[bytes]] = no_datagrams

    @property
    def encoded_in(self) -> str:
        return "pool process" if self.sent is no_datagrams else "export process"


class SocketRelay:
    """A relay on a socket pair, as a pool process has one; the other end is read back here."""

    def __init__(self, provider: TracerProvider) -> None:
        self.sender, self.receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
        self.sender.setblocking(False)
        self.receiver.setblocking(False)
        self.drops = DropCounter()
        self.relay = SpanRelay(self.sender, provider.resource, self.drops)

    def datagrams(self) -> list[bytes]:
        """Everything sent so far; fails if the buffer ever overflowed."""
        received = []
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(self.receiver.recv(MAX_DATAGRAM_BYTES))
        if self.drops.count:
            raise RuntimeError(f"the relay dropped {self.drops.count} spans: raise its buffer")
        return received


def lean_set(provider: TracerProvider) -> HandlerSet:
    """The receivers a pool process connects, wired as the worker wires them."""
    pool_task()
    relay = SocketRelay(provider)
    wiring = RunSpanWiring(app, provider, relay.relay, "redis", False, Extensions())
    return HandlerSet("lean", wiring.connect, wiring.disconnect, relay.datagrams)


def nothing_set(provider: TracerProvider) -> HandlerSet:
    return HandlerSet("none", lambda: None, lambda: None)


def upstream_set(provider: TracerProvider) -> HandlerSet | None:
    try:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
    except ImportError:
        return None
    instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    return HandlerSet(
        "upstream",
        lambda: instrumentor.instrument(tracer_provider=provider),
        instrumentor.uninstrument,
    )


@functools.cache
def request_template() -> dict[str, Any]:
    """The request a pool process pushes: the message's headers and properties, as Celery builds them."""
    conf = app.conf
    message = app.amqp.as_task_v2(
        "template",
        bench_noop.name,
        args=(),
        kwargs={},
        time_limit=conf.task_time_limit,
        soft_time_limit=conf.task_soft_time_limit,
        origin="gen1@bench",
        argsrepr="()",
        kwargsrepr="{}",
    )
    return {
        **message.headers,
        **message.properties,
        TRACEPARENT_HEADER: TRACEPARENT,
        "hostname": "celery@bench",
        "delivery_info": {
            "exchange": "",
            "routing_key": "default",
            "priority": 0,
            "redelivered": False,
        },
        "args": (),
        "kwargs": {},
        "is_eager": False,
    }


def pool_task() -> Any:
    """The no-op task with its tracer built, as a pool process builds it when it starts."""
    task = app.tasks[bench_noop.name]
    if task.__trace__ is None:
        task.__trace__ = build_tracer(task.name, task, app=app, hostname="celery@bench")
    return task


def run_tasks(count: int) -> None:
    """Runs ``count`` executions of a no-op task through its tracer, as a pool process does."""
    task = pool_task()
    template = request_template()
    draw = RunIds(TracerProvider())
    for _ in range(count):
        task_id = str(uuid.uuid4())
        request = {**template, "id": task_id, "root_id": task_id, "correlation_id": task_id}
        request[RUN_SPAN] = draw(TRACEPARENT, f"run/{task.name}", dict)
        task.__trace__(task_id, (), {}, request)


def cpu_us_per_task(handlers: HandlerSet, provider: TracerProvider, count: int) -> float:
    handlers.connect()
    try:
        started = time.process_time()
        run_tasks(count)
        provider.force_flush()
        return (time.process_time() - started) / count * 1e6
    finally:
        handlers.disconnect()
        handlers.sent()


def recorded_spans(
    factory: Callable[[TracerProvider], HandlerSet | None], tasks: int = ENCODE_BATCH
) -> list[bytes]:
    """What ``tasks`` tasks send under a handler set, on a provider of its own, as
    the datagrams an export process reads: SDK spans through a relay on the provider,
    the set's own rows through its relay."""
    provider = TracerProvider()
    provider_relay = SocketRelay(provider)
    provider.add_span_processor(provider_relay.relay)
    handlers = factory(provider)
    if handlers is None:
        return []
    handlers.connect()
    try:
        run_tasks(tasks)
    finally:
        handlers.disconnect()
    return provider_relay.datagrams() + handlers.sent()


def decoded(datagrams: Sequence[bytes]) -> list[ReadableSpan]:
    decoder = SpanDecoder()
    return [span for datagram in datagrams for span in decoder.decode(datagram)]


def encode_us_per_span(datagrams: Sequence[bytes]) -> float:
    """CPU µs per span of encoding the spans as one OTLP protobuf request with the SDK's
    encoder, in whichever process ``encoded_in`` names."""
    spans = decoded(datagrams)
    started = time.process_time()
    encode_spans(spans).SerializeToString()
    return (time.process_time() - started) / len(spans) * 1e6


def attribute_count(datagrams: Sequence[bytes]) -> int:
    return len(decoded(datagrams[:1])[0].attributes or {}) if datagrams else 0


FACTORIES: dict[str, Callable[[TracerProvider], HandlerSet | None]] = {
    "none": nothing_set,
    "lean": lean_set,
    "upstream": upstream_set,
}


def measure(rounds: int, tasks_per_round: int = TASKS_PER_ROUND) -> dict[str, Any]:
    provider = TracerProvider()
    # Large batches, as the worker exports them; the flush is timed with the tasks.
    provider.add_span_processor(
        BatchSpanProcessor(EncodingDiscarder(), max_queue_size=8192, max_export_batch_size=2048)
    )
    sets = [h for factory in FACTORIES.values() if (h := factory(provider)) is not None]
    samples = {h.name: recorded_spans(FACTORIES[h.name]) for h in sets}
    for handlers in sets:  # warm-up: imports, caches, the batch thread
        cpu_us_per_task(handlers, provider, tasks_per_round // 4)
    timings: dict[str, list[float]] = {h.name: [] for h in sets}
    encodings: dict[str, list[float]] = {name: [] for name, batch in samples.items() if batch}
    rng = random.Random(5)
    for _ in range(rounds):
        order = list(sets)
        rng.shuffle(order)
        for handlers in order:
            timings[handlers.name].append(cpu_us_per_task(handlers, provider, tasks_per_round))
            if handlers.name in encodings:
                encodings[handlers.name].append(encode_us_per_span(samples[handlers.name]))
    provider.shutdown()
    floor = statistics.median(timings["none"])
    rows = []
    for handlers in sets:
        name, series = handlers.name, timings[handlers.name]
        spans = len(decoded(samples[name])) / ENCODE_BATCH
        encode = statistics.median(encodings[name]) if name in encodings else 0.0
        added = statistics.median(series) - floor
        in_pool = handlers.encoded_in == "pool process"
        rows.append(
            {
                "handlers": name,
                "spans_per_task": spans,
                "attributes_per_span": attribute_count(samples[name]),
                "cpu_us_per_task_median": statistics.median(series),
                "cpu_us_per_task_min": min(series),
                "added_us_per_task": added,
                "encode_us_per_span": encode,
                "encoded_in": handlers.encoded_in,
                "handler_us_per_task": added - spans * encode if in_pool else added,
            }
        )
    return {
        "rounds": rounds,
        "tasks_per_round": tasks_per_round,
        "sets": rows,
        "upstream_installed": "upstream" in timings,
    }


def print_table(result: dict[str, Any]) -> None:
    print(
        f"{'handlers':<10}{'spans/task':>11}{'attrs':>6}{'CPU-us/task':>13}{'min':>8}{'added':>8}"
        f"{'encode/span':>13}{'encoded in':>16}{'handlers only':>15}"
    )
    for row in result["sets"]:
        print(
            f"{row['handlers']:<10}{row['spans_per_task']:>11.1f}{row['attributes_per_span']:>6}"
            f"{row['cpu_us_per_task_median']:>13.1f}{row['cpu_us_per_task_min']:>8.1f}"
            f"{row['added_us_per_task']:>8.1f}{row['encode_us_per_span']:>13.1f}"
            f"{row['encoded_in'] if row['spans_per_task'] else '':>16}"
            f"{row['handler_us_per_task']:>15.1f}"
        )
    if not result["upstream_installed"]:
        print("upstream: opentelemetry-instrumentation-celery is not installed; row skipped")
