"""Every process of a worker hands its finished spans to one export process of the worker.

    export = ExportProcess(log_level="INFO", log_format="text")
    export.start()                                 # main process, before the pool forks
    provider.add_span_processor(export.relay(provider.resource))
    ...
    export.stop()                                  # at worker shutdown: drained, flushed, bounded

Why: exporting a span in the process that ran the task (the SDK's OTLP
protobuf encoding, then an HTTP POST from a batch thread holding the GIL) cost
a pool process more than the span itself, on the task's own path. Here a pool
process sends each span as one datagram on a Unix socket pair the main process
opened before forking: a plain span (every ``run`` span) already OTLP protobuf,
joined from cached pieces (``telemetry.tracing.export.encoded``), any other as a JSON row
(``telemetry.tracing.export.rows``). The export process (``telemetry.tracing.export.process``)
batches and posts them at a lower CPU priority.

What this guarantees:

* A span is sent when it ends, so a pool process that exits (recycled, killed)
  has lost nothing it had ended; its exit needs no flush.
* Sending never blocks a task. If the export process falls behind and the
  socket's buffer (up to :data:`SOCKET_BUFFER_BYTES`) is full, the span is dropped,
  and the worker logs how many, once a minute across its processes.
* The main process keeps the receiving end open, so a restarted export process
  (it is restarted when it dies) reads what was queued meanwhile.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from telemetry.bounded_cache import remember
from telemetry.log_throttle import LogThrottle
from telemetry.tracing.export.encoded import encoded_head
from telemetry.tracing.export.pieces import SpanPieces, envelope_parts
from telemetry.tracing.export.rows import MAX_CACHED, encode, resource_line, row_of
from telemetry.tracing.providers import worker_resource

logger = logging.getLogger("telemetry.tracing.export.relay")

#: The socket's send buffer: about 2,500 typical spans of slack (Linux caps it at
#: net.core.wmem_max, 4 MiB here).
SOCKET_BUFFER_BYTES = 4 << 20
#: A larger span (a huge exception event) is dropped rather than sent.
MAX_DATAGRAM_BYTES = 1 << 20
#: Tells the export process to drain, flush and exit.
SHUTDOWN = b"\x00shutdown"
#: How long the main process waits for the export process to flush at shutdown.
STOP_TIMEOUT_SECONDS = 2.0
#: Restarts back off from 1 s to a minute while the export process keeps dying young.
RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 60.0
#: The module the export process runs, which also tells it apart from pool processes.
EXPORT_MODULE = "telemetry.tracing.export.process"


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
        self._resource = resource
        self._line = resource_line(resource)
        self._drops = drops
        self._pieces = SpanPieces()
        self._heads: dict[tuple[str, str | None], bytes] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is not None and context.trace_flags.sampled:
            self.send((row_of(span),))

    def send(self, rows: Sequence[Sequence[Any]]) -> None:
        """Send rows (``telemetry.tracing.export.rows``): each plain span as an encoded datagram, the
        others as one JSON datagram. What cannot go now is dropped."""
        others = []
        for fields in rows:
            try:
                span = self._pieces.plain(fields)
            except (ValueError, OverflowError, KeyError):
                span = None  # the export process refuses it, and says so
            if span is None:
                others.append(fields)
            else:
                self._send(self._head(fields[-2], fields[-1]) + span)
        if others:
            self._send(encode(self._line, others))

    def _head(self, scope_name: str, scope_version: str | None) -> bytes:
        key = (scope_name, scope_version)
        found = self._heads.get(key)
        if found is None:
            scope = InstrumentationScope(scope_name, scope_version)
            head = encoded_head(envelope_parts(self._resource, scope))
            found = remember(self._heads, key, head, MAX_CACHED)
        return found

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


class ExportProcess:
    """The export process as the main process sees it: started, restarted, stopped."""

    def __init__(self, log_level: str, log_format: str) -> None:
        self.log_level = log_level
        self.log_format = log_format
        self.drops = DropCounter()
        self.sender, self._receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
        self.sender.setblocking(False)
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._main_pid = os.getpid()

    def relay(self, resource: Resource) -> SpanRelay:
        return SpanRelay(self.sender, resource, self.drops)

    def start(self) -> None:
        self._process = self._spawn()
        threading.Thread(target=self._supervise, name="span-export-supervisor", daemon=True).start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        fd = self._receiver.fileno()
        return subprocess.Popen(
            [
                *(sys.executable, "-m", EXPORT_MODULE, "--fd", str(fd)),
                *("--parent", str(self._main_pid)),
                *("--log-level", self.log_level, "--log-format", self.log_format),
            ],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
        )

    def _supervise(self) -> None:
        """Restart the export process whenever it exits before the worker stops it."""
        delay = RESTART_DELAY_SECONDS
        while self._process is not None:
            started = time.monotonic()
            code = self._process.wait()
            if time.monotonic() - started > MAX_RESTART_DELAY_SECONDS:
                delay = RESTART_DELAY_SECONDS
            if self._stopping.wait(delay):
                return
            self._process = self._spawn()
            logger.warning(
                "the span export process exited with %s; started a new one after %.0f s",
                code,
                delay,
            )
            delay = min(2 * delay, MAX_RESTART_DELAY_SECONDS)

    def in_pool_process(self) -> None:
        """In a forked pool process: keep only the sending end."""
        self._receiver.close()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        """Ask for a drain and a flush, wait at most ``timeout``; True when it exited in time."""
        process = self._process
        self._stopping.set()
        if process is None or process.poll() is not None:
            return False
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sender.send(SHUTDOWN)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
            return True
        except subprocess.TimeoutExpired:
            logger.warning("the span export process did not flush within %.0f s", timeout)
            process.kill()
            process.wait()
            return False


def relayed_provider(
    export: ExportProcess | None, worker_hostname: str
) -> tuple[TracerProvider, SpanRelay | None]:
    """A worker process's provider and relay: its spans go to ``export``; nowhere when it
    is None (``OTEL_TRACES_EXPORTER=none``: spans are still made and propagated)."""
    provider = TracerProvider(resource=worker_resource(worker_hostname))
    if export is None:
        return provider, None
    relay = export.relay(provider.resource)
    provider.add_span_processor(relay)
    return provider, relay


def is_export_process(pid: int) -> bool:
    """Whether ``pid`` (a child of a worker's main process) is its span export process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return EXPORT_MODULE.encode() in cmdline.read()
    except FileNotFoundError:
        return False
