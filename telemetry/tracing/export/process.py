"""The worker's span export process: ``python -m telemetry.tracing.export.process --fd N --parent PID``.

The worker's main process starts it (``telemetry.tracing.export.relay.ExportProcess``) and
every process of the worker sends it finished spans as datagrams: plain spans
already OTLP protobuf (``telemetry.tracing.export.encoded``), others as JSON rows
(``telemetry.tracing.export.rows``). It exports them with the exporter the ``OTEL_*``
variables choose, behind the same collector-down guard as any other exporter
here (``telemetry.tracing.providers``): for OTLP/HTTP, the default, it builds the request
body itself and posts batches with the exporter's HTTP client
(:class:`RequestSink`); any other exporter gets SDK spans rebuilt from the
datagrams, through the SDK's batch processor (:class:`SdkSink`).

It runs ``NICE_INCREMENT`` below the worker's CPU priority: OTLP encoding and
HTTP take the cycles the tasks leave idle instead of sitting on their path.
It ignores SIGINT and SIGTERM, which a terminal or a supervisor sends to the
whole process group: the worker's own spans still arrive after them. It exits
on the worker's shutdown message, after draining the socket and a flush of at
most ``FLUSH_TIMEOUT_SECONDS``, or when its parent is gone.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Protocol

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from telemetry.log_throttle import LogThrottle
from telemetry.logs import configure_logging
from telemetry.tracing.export.encoded import DatagramDecoder
from telemetry.tracing.export.relay import MAX_DATAGRAM_BYTES, SHUTDOWN
from telemetry.tracing.export.request import OtlpRequest
from telemetry.tracing.export.rows import SpanDecodeError
from telemetry.tracing.providers import (
    FLUSH_TIMEOUT_SECONDS,
    Batching,
    CollectorState,
    GuardedExporter,
    batching_from_environment,
    bounded,
    exporter_from_environment,
    quiet_export_failures,
    schedule_delay_millis,
)

logger = logging.getLogger("telemetry.tracing.export.process")

NICE_INCREMENT = 10
#: How often the socket is read (and the worker checked for): at most this much
#: latency before a span joins its batch; 65 spans queue meanwhile at 1,300 a second.
READ_INTERVAL_SECONDS = 0.05
MSG_TRUNC = int(socket.MSG_TRUNC)  # an int: the enum's "&" costs microseconds per datagram
#: A batch is posted once its datagrams reach this size, well under a collector's
#: default 4 MiB limit on a request body.
MAX_REQUEST_BYTES = 2 << 20


class Sink(Protocol):
    """Where the export process puts what it reads."""

    def add(self, datagram: bytes) -> None:
        """Take a datagram's spans; :class:`SpanDecodeError` when it is malformed."""

    def tick(self) -> None:
        """Called after each read of the socket: export what is due."""

    def close(self) -> None:
        """Export what is left and shut the exporter down, within ``FLUSH_TIMEOUT_SECONDS``."""


class SdkSink:
    """Any exporter: SDK spans rebuilt from the datagrams, through the SDK's batch processor."""

    def __init__(self, exporter: SpanExporter, state: CollectorState) -> None:
        self.decoder = DatagramDecoder()
        self.processor = BatchSpanProcessor(
            GuardedExporter(exporter, state), schedule_delay_millis=schedule_delay_millis()
        )

    def add(self, datagram: bytes) -> None:
        for span in self.decoder.decode(datagram):
            self.processor.on_end(span)

    def tick(self) -> None:
        return  # the batch processor's thread exports

    def close(self) -> None:
        processor = self.processor
        bounded(lambda: (processor.force_flush(), processor.shutdown()), FLUSH_TIMEOUT_SECONDS)  # type: ignore[no-untyped-call]


class RequestSink:
    """The OTLP/HTTP exporter: request bodies built from the datagrams (``telemetry.tracing.export.request``),
    posted in batches by the exporter's own HTTP client.

    The exporter's public ``export`` takes SDK spans only, and encoding those is
    what costs. Its client, the private ``_client`` of
    opentelemetry-exporter-otlp-proto-http 1.45, posts a serialized request with
    everything the exporter was configured with from the ``OTEL_*`` variables
    (endpoint, headers, compression, timeout, retries). Where an exporter has no
    such client, :meth:`of` returns None and the export process falls back to
    :class:`SdkSink`; a test fails if the installed exporter loses it. The
    exporter's self-metrics (off unless ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``)
    are not recorded on this path. A batch is posted when it holds
    ``max_spans`` spans or ``MAX_REQUEST_BYTES`` of datagrams, or ``delay_seconds``
    after its first span. While a post is in flight the socket buffers what
    the worker sends, as the batch processor's queue would.
    """

    def __init__(
        self,
        post: Callable[[bytes], bool],
        shutdown: Callable[[], object],
        state: CollectorState,
        batching: Batching,
    ) -> None:
        self.request = OtlpRequest()
        self._post = post
        self._shutdown = shutdown
        self._state = state
        self._batching = batching
        self._due: float | None = None

    @classmethod
    def of(cls, exporter: SpanExporter, state: CollectorState) -> RequestSink | None:
        """A sink posting through ``exporter``'s client; None for any other exporter."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        client = getattr(exporter, "_client", None)
        export = getattr(client, "export", None)
        if not isinstance(exporter, OTLPSpanExporter) or not callable(export):
            return None
        return cls(
            lambda body: bool(export(body).success),
            exporter.shutdown,
            state,
            batching_from_environment(),
        )

    def add(self, datagram: bytes) -> None:
        self.request.add(datagram)
        if self.request.spans >= self._batching.max_spans or self.request.size >= MAX_REQUEST_BYTES:
            self.flush()
        elif self._due is None:
            self._due = time.monotonic() + self._batching.delay_seconds

    def tick(self) -> None:
        if self._due is not None and time.monotonic() >= self._due:
            self.flush()

    def flush(self) -> None:
        self._due = None
        if self.request.spans:
            body = self.request.take()
            self._state.attempt(lambda: self._post(body))

    def close(self) -> None:
        bounded(self._flush_and_shut_down, FLUSH_TIMEOUT_SECONDS)

    def _flush_and_shut_down(self) -> None:
        self.flush()
        self._shutdown()


def sink_for(exporter: SpanExporter) -> Sink:
    state = CollectorState()
    return RequestSink.of(exporter, state) or SdkSink(exporter, state)


class Reader:
    """Reads every datagram waiting on the socket and hands it to the sink."""

    def __init__(self, receiver: socket.socket, sink: Sink) -> None:
        self.receiver = receiver
        self.sink = sink
        self.buffer = bytearray(MAX_DATAGRAM_BYTES)
        self.view = memoryview(self.buffer)
        self._log = LogThrottle()
        receiver.setblocking(False)

    def read_waiting(self) -> bool:
        """Everything queued now; False once the worker's shutdown message was read."""
        while True:
            try:
                size, _, flags, _ = self.receiver.recvmsg_into([self.buffer])
            except BlockingIOError:
                return True
            datagram = self.view[:size].tobytes()  # one copy, not a slice and a copy
            if datagram == SHUTDOWN:
                return False
            try:
                if flags & MSG_TRUNC:
                    raise SpanDecodeError("truncated datagram")
                self.sink.add(datagram)
            except SpanDecodeError as exc:
                self._log_malformed(exc)

    def _log_malformed(self, exc: SpanDecodeError) -> None:
        if self._log.due():
            logger.warning("dropped a malformed span datagram: %s", exc)


def serve(receiver: socket.socket, sink: Sink, parent: int) -> None:
    """Read what is waiting every ``READ_INTERVAL_SECONDS`` until told to stop or orphaned.

    Polling rather than blocking in ``recv`` is deliberate: a sender wakes a
    process blocked on the socket, once per span, and pays for that wake-up on
    the task's path. Queued datagrams wait at most one interval.
    """
    reader = Reader(receiver, sink)
    while reader.read_waiting():
        sink.tick()
        if os.getppid() != parent:
            logger.warning("the worker is gone; flushing and exiting")
            reader.read_waiting()
            return
        time.sleep(READ_INTERVAL_SECONDS)
    reader.read_waiting()  # anything sent after the shutdown message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telemetry.tracing.export.process")
    parser.add_argument("--fd", type=int, required=True, help="the receiving end of the socket")
    parser.add_argument("--parent", type=int, required=True, help="the worker's main process")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    args = parser.parse_args(argv)
    multiprocessing.current_process().name = "SpanExporter"
    configure_logging(args.log_level, args.log_format)
    quiet_export_failures()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    os.nice(NICE_INCREMENT)
    exporter = exporter_from_environment()
    receiver = socket.socket(fileno=args.fd)
    if exporter is None:
        return 0
    sink = sink_for(exporter)
    try:
        serve(receiver, sink, args.parent)
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
