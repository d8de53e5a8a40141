"""The main-process side of the export hop: the export process, started, restarted, stopped.

    export = ExportProcess(log_level="INFO", log_format="text")
    export.start()                                   # before the pool forks
    provider, relay = relayed_provider(export, hostname, service)
    ...
    export.stop()                                    # at worker shutdown: drained, flushed, bounded

The main process keeps the receiving end of the socket open, so an export
process restarted after it died reads what was queued meanwhile. It starts
without ``opentelemetry-instrument``'s ``sitecustomize`` (its directory is left
off ``PYTHONPATH``): no distro, configurator or instrumentor runs there, so the
exporter's own HTTP requests are never traced. See ``telemetry.tracing.export``
for the whole hop.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from telemetry.tracing.export.relay import SHUTDOWN, SOCKET_BUFFER_BYTES, DropCounter, SpanRelay
from telemetry.tracing.providers import worker_resource
from telemetry.tracing.service import Service

logger = logging.getLogger("telemetry.tracing.export")

#: How long the main process waits for the export process to flush at shutdown.
STOP_TIMEOUT_SECONDS = 2.0
#: Restarts back off from 1 s to a minute while the export process keeps dying young.
RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 60.0
#: The module the export process runs, which also tells it apart from pool processes.
EXPORT_MODULE = "telemetry.tracing.export.process"
#: Where ``opentelemetry-instrument`` puts the ``sitecustomize`` that auto-instruments a process.
AUTO_INSTRUMENTATION_DIR = os.path.join("opentelemetry", "instrumentation", "auto_instrumentation")


class ExportProcess:
    """The export process as the main process sees it: started, restarted, stopped."""

    #: How it encodes run records (``python -m telemetry.tracing.export.process --encoder``).
    encoder = "records"

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
                *("--encoder", self.encoder),
            ],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            env=export_environment(os.environ),
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


def export_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the auto-instrumentation's directory on ``PYTHONPATH``."""
    environment = dict(environ)
    paths = environment.get("PYTHONPATH", "").split(os.pathsep)
    kept = [path for path in paths if not path.rstrip(os.sep).endswith(AUTO_INSTRUMENTATION_DIR)]
    if len(kept) < len(paths):
        if any(kept):
            environment["PYTHONPATH"] = os.pathsep.join(kept)
        else:
            del environment["PYTHONPATH"]
    return environment


def relayed_provider(
    export: ExportProcess | None, worker_hostname: str, service: Service
) -> tuple[TracerProvider, SpanRelay | None]:
    """A worker process's provider and relay: its spans go to ``export``; nowhere when it
    is None (``OTEL_TRACES_EXPORTER=none``: spans are still made and propagated)."""
    provider = TracerProvider(resource=worker_resource(service, worker_hostname))
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
