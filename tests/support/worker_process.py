"""A real ``celery -A worker worker`` subprocess, started and stopped by tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from telemetry.tracing.export.supervisor import is_export_process
from worker.command import worker_command

ROOT = Path(__file__).resolve().parents[2]
ALL_QUEUES = "agents,briefings,scraping,default"
READY_MARK = " ready."
START_TIMEOUT_SECONDS = 30.0


def wait_until(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class WorkerProcess:
    """One worker: prefork, concurrency 2 by default, logging to a file."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        queues: str = ALL_QUEUES,
        concurrency: int = 2,
        extra_args: tuple[str, ...] = (),
        command: list[str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        """``command``: another app's worker command line, instead of the jobpilot worker's
        (with ``tests.support.tasks``); ``cwd``: where it runs (``celery -A`` imports from there)."""
        self.cwd = cwd
        self.name = f"w{uuid.uuid4().hex[:8]}@%h"
        self.env = {**os.environ, "METRICS_PORT": str(free_port()), **env, "PYTHONUNBUFFERED": "1"}
        self.metrics_url = f"http://127.0.0.1:{self.env['METRICS_PORT']}/metrics"
        self.log_path = log_dir / f"{self.name.split('@')[0]}.log"
        jobpilot = [
            *worker_command(queues.split(","), concurrency),
            "--include",
            "tests.support.tasks",
        ]
        self.args = [
            *(command or jobpilot),
            "-n",
            self.name,
            "--without-mingle",
            "--without-gossip",
            *extra_args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> WorkerProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_for_log(READY_MARK, START_TIMEOUT_SECONDS)
        return self

    @property
    def hostname(self) -> str:
        """The node name with ``%h`` expanded, as the worker reports it."""
        return self.name.replace("%h", socket.gethostname())

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float, count: int = 1) -> str:
        def seen() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.process.returncode}):\n{self.log()[-4000:]}"
                )
            return self.log().count(text) >= count

        wait_until(seen, timeout, interval=0.05, message=f"{text!r} in the worker log")
        return self.log()

    def child_pids(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def pool_pids(self) -> list[int]:
        """The prefork pool's processes: the children but the span export process."""
        return [pid for pid in self.child_pids() if not is_export_process(pid)]

    def stop(self, timeout: float = 20.0) -> int | None:
        """Warm shutdown (SIGTERM), escalating to SIGKILL of the whole group."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()
        finally:
            self._log.close()

    def kill(self) -> int:
        """SIGKILL the main process and its pool, as a crash would."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)


#: A short visibility timeout, so unacked messages come back within seconds:
#: 1.1 x (TASK_TIME_LIMIT + MAX_RETRY_COUNTDOWN) = 8.8 s < the 9 s visibility timeout.
SHORT_VISIBILITY = {
    "BROKER_VISIBILITY_TIMEOUT": "9",
    "TASK_SOFT_TIME_LIMIT": "5",
    "TASK_TIME_LIMIT": "6",
    "MAX_RETRY_COUNTDOWN": "2",
    "BROKER_UNACKED_RESTORE_INTERVAL": "1",
    "BROKER_UNACKED_RESTORE_THROTTLE": "1",
}
