"""The worker's span export process: ``python -m telemetry.export_process --fd N --parent PID``.

The worker's main process starts it (``telemetry.span_relay.ExportProcess``) and
every process of the worker sends it finished spans as datagrams. It rebuilds
them as SDK spans (``telemetry.span_codec``) and exports them with the SDK's
batch processor and the exporter the ``OTEL_*`` variables choose, behind the
same collector-down guard as any other exporter here (``telemetry.tracing``).

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
from telemetry.span_codec import SpanDecodeError, SpanDecoder
from telemetry.span_relay import MAX_DATAGRAM_BYTES, SHUTDOWN
from telemetry.tracing import (
    FLUSH_TIMEOUT_SECONDS,
    CollectorState,
    GuardedExporter,
    bounded,
    exporter_from_environment,
    quiet_export_failures,
    schedule_delay_millis,
)
from worker.logs import configure_logging

logger = logging.getLogger("telemetry.export_process")

NICE_INCREMENT = 10
#: How often the socket is read (and the worker checked for): at most this much
#: latency before a span joins its batch; 65 spans queue meanwhile at 1,300 a second.
READ_INTERVAL_SECONDS = 0.05


class Reader:
    """Reads every datagram waiting on the socket and hands their spans to the processor."""

    def __init__(self, receiver: socket.socket, processor: BatchSpanProcessor) -> None:
        self.receiver = receiver
        self.processor = processor
        self.decoder = SpanDecoder()
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
                if flags & socket.MSG_TRUNC:
                    raise SpanDecodeError("truncated datagram")
                spans = self.decoder.decode(datagram)
            except SpanDecodeError as exc:
                self._log_malformed(exc)
                continue
            for span in spans:
                self.processor.on_end(span)

    def _log_malformed(self, exc: SpanDecodeError) -> None:
        if self._log.due():
            logger.warning("dropped a malformed span datagram: %s", exc)


def serve(receiver: socket.socket, processor: BatchSpanProcessor, parent: int) -> None:
    """Read what is waiting every ``READ_INTERVAL_SECONDS`` until told to stop or orphaned.

    Polling rather than blocking in ``recv`` is deliberate: a sender wakes a
    process blocked on the socket, once per span, and pays for that wake-up on
    the task's path. Queued datagrams wait at most one interval.
    """
    reader = Reader(receiver, processor)
    while reader.read_waiting():
        if os.getppid() != parent:
            logger.warning("the worker is gone; flushing and exiting")
            reader.read_waiting()
            return
        time.sleep(READ_INTERVAL_SECONDS)
    reader.read_waiting()  # anything sent after the shutdown message


def build_processor(exporter: SpanExporter) -> BatchSpanProcessor:
    return BatchSpanProcessor(
        GuardedExporter(exporter, CollectorState()), schedule_delay_millis=schedule_delay_millis()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telemetry.export_process")
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
    processor = build_processor(exporter)
    try:
        serve(receiver, processor, args.parent)
    finally:
        bounded(lambda: (processor.force_flush(), processor.shutdown()), FLUSH_TIMEOUT_SECONDS)  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
