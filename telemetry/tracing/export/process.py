"""The worker's span export process: ``python -m telemetry.tracing.export.process --fd N --parent PID``.

The worker's main process starts it (``telemetry.tracing.export.supervisor``)
and every process of the worker sends it finished spans as JSON rows. It
decodes them into SDK spans and hands them to the SDK's ``BatchSpanProcessor``
and the exporter the ``OTEL_*`` variables choose, behind the collector-down
guard every exporter here has (``telemetry.tracing.providers``). See
``telemetry.tracing.export`` for the whole hop.

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

from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from telemetry.log_throttle import LogThrottle
from telemetry.logs import configure_logging
from telemetry.tracing.collector import CollectorState, GuardedExporter, quiet_export_failures
from telemetry.tracing.export.decoder import SpanDecoder
from telemetry.tracing.export.encoder import RecordEncoder, RecordExporter
from telemetry.tracing.export.relay import MAX_DATAGRAM_BYTES, SHUTDOWN
from telemetry.tracing.export.rows import SpanDecodeError
from telemetry.tracing.providers import (
    FLUSH_TIMEOUT_SECONDS,
    bounded,
    exporter_from_environment,
    schedule_delay_millis,
)

logger = logging.getLogger("telemetry.tracing.export")

NICE_INCREMENT = 10
#: How often the socket is read (and the worker checked for): at most this much
#: latency before a span joins its batch; 65 spans queue meanwhile at 1,300 a second.
READ_INTERVAL_SECONDS = 0.05
MSG_TRUNC = int(socket.MSG_TRUNC)
#: How run records are encoded (``--encoder``): by the contained encoder, or as SDK spans.
RECORDS, SDK = "records", "sdk"
ENCODERS = (RECORDS, SDK)  # an int: the enum's "&" costs microseconds per datagram


class SpanSink:
    """Decoded spans through the SDK's batch processor, to the exporter ``OTEL_*`` chose,
    behind the shared collector-down guard.

    With the contained encoder (a :class:`RecordExporter`, OTLP/HTTP), run records
    go through as they came; any other exporter gets SDK spans only."""

    def __init__(self, exporter: SpanExporter, state: CollectorState) -> None:
        self.decoder = SpanDecoder()
        self.records = isinstance(exporter, RecordExporter)
        if isinstance(exporter, RecordExporter):
            exporter.encoder = RecordEncoder(self.decoder.span)
        self.processor = BatchSpanProcessor(
            GuardedExporter(exporter, state), schedule_delay_millis=schedule_delay_millis()
        )

    def add(self, datagram: bytes) -> None:
        """Take a datagram's spans; :class:`SpanDecodeError` when it is malformed."""
        if self.records:
            for span in self.decoder.decode_keeping_records(datagram):
                self.processor.on_end(span)  # type: ignore[arg-type]  # RecordExporter takes both
        else:
            for readable in self.decoder.decode(datagram):
                self.processor.on_end(readable)

    def close(self) -> None:
        """Export what is left and shut the exporter down, within ``FLUSH_TIMEOUT_SECONDS``."""
        processor = self.processor
        bounded(lambda: (processor.force_flush(), processor.shutdown()), FLUSH_TIMEOUT_SECONDS)  # type: ignore[no-untyped-call]


class Reader:
    """Reads every datagram waiting on the socket and hands it to the sink."""

    def __init__(self, receiver: socket.socket, sink: SpanSink) -> None:
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


def serve(receiver: socket.socket, sink: SpanSink, parent: int) -> None:
    """Read what is waiting every ``READ_INTERVAL_SECONDS`` until told to stop or orphaned.

    Polling rather than blocking in ``recv`` is deliberate: a sender wakes a
    process blocked on the socket, once per span, and pays for that wake-up on
    the task's path. Queued datagrams wait at most one interval.
    """
    reader = Reader(receiver, sink)
    while reader.read_waiting():
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
    parser.add_argument(
        "--encoder",
        default=RECORDS,
        choices=ENCODERS,
        help="records: run records by the contained encoder (OTLP/HTTP); sdk: every span by the SDK's",
    )
    args = parser.parse_args(argv)
    multiprocessing.current_process().name = "SpanExporter"
    configure_logging(args.log_level, args.log_format)
    quiet_export_failures()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    os.nice(NICE_INCREMENT)
    exporter = exporter_from_environment(records=args.encoder == RECORDS)
    receiver = socket.socket(fileno=args.fd)
    if exporter is None:
        return 0
    sink = SpanSink(exporter, CollectorState())
    try:
        serve(receiver, sink, args.parent)
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
