"""The pool side of the export hop: each finished span leaves as one datagram.

    relay = SpanRelay(sender, provider.resource, drops)   # a provider's span processor
    relay.send([row])                                     # a run span's end, as a row
    relay.send_record(body)                               # or as a run record

Every span is sent when it ends, as a JSON row (``telemetry.tracing.export.rows``)
or, for a run span that task code left alone, as a run record
(``telemetry.tracing.export.run_records``), on the socket the main process
opened before forking. Sending never blocks a
task: when the socket's buffer is full the span is dropped and counted
(:class:`DropCounter`). See ``telemetry.tracing.export`` for the whole hop.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from telemetry.log_throttle import LogThrottle
from telemetry.tracing.export.rows import SpanDecodeError, encode, resource_line, row_of

logger = logging.getLogger("telemetry.tracing.export")

#: The socket's send buffer: about 2,500 typical spans of slack (Linux caps it at
#: net.core.wmem_max, 4 MiB here).
SOCKET_BUFFER_BYTES = 4 << 20
#: A larger span (a huge exception event) is dropped rather than sent.
MAX_DATAGRAM_BYTES = 1 << 20
#: Tells the export process to drain, flush and exit.
SHUTDOWN = b"\x00shutdown"


class DropCounter:
    """Spans dropped by any process of the worker, logged once a minute in all.

    The values live in shared memory the main process maps before forking, so pool
    processes recycled after every task still log once a minute between them.
    """

    def __init__(self) -> None:
        self._dropped = multiprocessing.Value("q", 0, lock=False)
        self._log = LogThrottle()

    def dropped(self, reason: str) -> None:
        self._dropped.value += 1
        if self._log.due():
            logger.warning(
                "spans dropped before export: %d so far (last: %s)", self._dropped.value, reason
            )

    @property
    def count(self) -> int:
        return int(self._dropped.value)


class SpanRelay(SpanProcessor):
    """A span processor that sends each finished, sampled span to the export process."""

    def __init__(self, sender: socket.socket, resource: Resource, drops: DropCounter) -> None:
        self._sender = sender
        self._line = resource_line(resource)
        self._head = self._line + b"\n"
        self._drops = drops

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is not None and context.trace_flags.sampled:
            try:
                self.send((row_of(span),))
            except SpanDecodeError as exc:
                self._drops.dropped(str(exc))

    def send(self, rows: Sequence[Sequence[Any]]) -> None:
        """Send rows as one datagram; what cannot go now is dropped and counted."""
        self._send(encode(self._line, rows))

    def send_record(self, body: bytes) -> None:
        """Send a run record (``telemetry.tracing.export.run_records``) as one datagram."""
        self._send(self._head + body)

    def _send(self, datagram: bytes) -> None:
        if len(datagram) > MAX_DATAGRAM_BYTES:
            self._drops.dropped(f"a span of {len(datagram)} bytes")
            return
        try:
            self._sender.send(datagram)
        except OSError as exc:  # BlockingIOError when the buffer is full
            self._drops.dropped(type(exc).__name__)

    def shutdown(self) -> None:
        return

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # nothing is buffered here
