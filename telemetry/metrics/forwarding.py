"""Publishes made in pool processes, forwarded to the main process's counter.

A pool process that retries a task or enqueues another one publishes from the
child, whose registry nobody scrapes. Before the pool forks, the main process
opens a pipe; each child writes one line per publish, ``<queue>\\t<task>\\n``,
and a reader thread in the main process counts it. Lines are far below
``PIPE_BUF``, so concurrent writes from several children never interleave.
Writes are non-blocking: if the main process stops reading, a child drops the
count (and logs that once) rather than stalling a task.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

logger = logging.getLogger("telemetry.metrics.forwarding")

#: Queue and task names are cut to this length so a line stays one atomic write.
MAX_FIELD_BYTES = 512


class PublishForwarder:
    def __init__(self, count: Callable[[str, str], None]) -> None:
        self.count = count
        self._read_fd, self._write_fd = os.pipe()
        self._reader: threading.Thread | None = None
        self._warned = False

    # Main process ----------------------------------------------------------
    def start_reading(self) -> None:
        self._reader = threading.Thread(target=self._read, name="publish-forwarder", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._read_fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    queue, _, task = line.decode("utf-8", "replace").partition("\t")
                    self.count(queue, task)

    def stop(self) -> None:
        """At shutdown: close the main process's write end. The reader reads to the end
        of what pool processes wrote, and ends once the last of them has exited."""
        if self._write_fd < 0:
            return
        os.close(self._write_fd)
        self._write_fd = -1
        if self._reader is None:  # never read: nobody else will close it
            os.close(self._read_fd)

    # Pool process ----------------------------------------------------------
    def become_child(self) -> None:
        """In a forked pool process: keep only a non-blocking write end."""
        os.close(self._read_fd)
        os.set_blocking(self._write_fd, False)

    def forward(self, queue: str, task: str) -> None:
        line = f"{queue[:MAX_FIELD_BYTES]}\t{task[:MAX_FIELD_BYTES]}\n".encode()
        try:
            os.write(self._write_fd, line)
        except (BlockingIOError, BrokenPipeError, OSError) as exc:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "publish counts from this pool process are being dropped: %s",
                    type(exc).__name__,
                )
