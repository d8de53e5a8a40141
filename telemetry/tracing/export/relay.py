"""The pool side of the export hop: each finished span leaves as one datagram.

    relay = SpanRelay(sender, provider.resource, drops)   # a provider's span processor
    relay.send([row])                                     # the lean run span's end
    thread = RelayThread(relay)                           # in a pool process:
    thread.send([row])                                    #   sent by a thread of its own
    thread.flush()                                        #   as the process exits

Every span is sent when it ends, as a JSON row (``telemetry.tracing.export.rows``),
on the socket the main process opened before forking. Sending never blocks a
task: when the socket's buffer is full the span is dropped and counted
(:class:`DropCounter`). See ``telemetry.tracing.export`` for the whole hop.

A pool process hands its ``run`` spans' rows to a :class:`RelayThread`: the
encoding and the ``send`` then happen while the process waits for its next
task, after the task's result is on its way to the main process, instead of
before it. The worker's throughput on 1 ms CPU tasks rose by about 2% with it
(docs/benchmarks.md, "Sending off the task's path").
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import socket
import threading
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
#: Spans a relay thread may hold before new ones are dropped (and counted).
MAX_PENDING = 2048
#: How long an exiting pool process waits for its relay thread's last sends.
FLUSH_TIMEOUT_SECONDS = 2.0


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
        datagram = encode(self._line, rows)
        if len(datagram) > MAX_DATAGRAM_BYTES:
            self._drops.dropped(f"a span of {len(datagram)} bytes")
            return
        try:
            self._sender.send(datagram)
        except OSError as exc:  # BlockingIOError when the buffer is full
            self._drops.dropped(type(exc).__name__)

    def dropped(self, reason: str) -> None:
        self._drops.dropped(reason)

    def shutdown(self) -> None:
        return

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # nothing is buffered here


class RelayThread:
    """Sends rows through a relay from a thread of this process, in the order given.

    ``send`` only queues the rows, so a task's ``task_postrun`` returns at once and
    its result reaches the main process before the span is encoded and sent; the
    thread does that while the process waits for its next task. The thread is
    started by the first ``send`` of each process (a forked copy starts its own).
    A span is lost only if its process is killed in the moment between its end
    and its send; a process that exits in order calls :meth:`flush` first (the
    pool process's ``worker_process_shutdown``). Past ``MAX_PENDING`` queued
    spans, new ones are dropped and counted with the relay's other drops.
    """

    def __init__(self, relay: SpanRelay, max_pending: int = MAX_PENDING) -> None:
        self._relay = relay
        self._max_pending = max_pending
        #: Rows to send, and the events that flushes wait on.
        self._pending: queue.SimpleQueue[Sequence[Sequence[Any]] | threading.Event] = (
            queue.SimpleQueue()
        )
        self._pid = 0

    def send(self, rows: Sequence[Sequence[Any]]) -> None:
        if self._pid != os.getpid():
            self._start()
        if self._pending.qsize() >= self._max_pending:
            self._relay.dropped("the relay thread fell behind")
            return
        self._pending.put(rows)

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Wait until everything queued so far is sent; False if ``timeout`` passed first."""
        if self._pid != os.getpid():
            return True  # nothing was queued in this process
        done = threading.Event()
        self._pending.put(done)
        return done.wait(timeout)

    def _start(self) -> None:
        self._pending = queue.SimpleQueue()  # a forked copy's queue has no thread behind it
        self._pid = os.getpid()
        threading.Thread(
            target=self._run, args=(self._pending,), name="span-relay", daemon=True
        ).start()

    def _run(self, pending: queue.SimpleQueue[Sequence[Sequence[Any]] | threading.Event]) -> None:
        while True:
            item = pending.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._relay.send(item)
            except Exception as exc:  # one span that cannot be sent must not stop the rest
                self._relay.dropped(f"{type(exc).__name__} while sending")
