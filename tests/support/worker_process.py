"""A real ``celery -A worker worker`` subprocess, started and stopped by tests."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path

from telemetry.tracing.export.supervisor import is_export_process
from tests.support.process import ROOT, LoggedProcess, free_port, wait_until
from worker.command import worker_command

ALL_QUEUES = "agents,briefings,scraping,default"
READY_MARK = " ready."
START_TIMEOUT_SECONDS = 30.0


class WorkerProcess(LoggedProcess):
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
        self.name = f"w{uuid.uuid4().hex[:8]}@%h"
        full_env = {**os.environ, "METRICS_PORT": str(free_port()), **env, "PYTHONUNBUFFERED": "1"}
        self.metrics_url = f"http://127.0.0.1:{full_env['METRICS_PORT']}/metrics"
        jobpilot = [
            *worker_command(queues.split(","), concurrency),
            "--include",
            "tests.support.tasks",
        ]
        args = [
            *(command or jobpilot),
            "-n",
            self.name,
            "--without-mingle",
            "--without-gossip",
            *extra_args,
        ]
        log_path = log_dir / f"{self.name.split('@')[0]}.log"
        super().__init__("worker", args, full_env, log_path, cwd)

    def start(self, wait: bool = True) -> WorkerProcess:
        self.spawn()
        if wait:
            self.wait_for_log(READY_MARK, START_TIMEOUT_SECONDS)
        return self

    @property
    def hostname(self) -> str:
        """The node name with ``%h`` expanded, as the worker reports it."""
        return self.name.replace("%h", socket.gethostname())

    def wait_for_log(self, text: str, timeout: float, count: int = 1) -> str:
        def seen() -> bool:
            self.exited()
            return self.log().count(text) >= count

        wait_until(seen, timeout, interval=0.05, message=f"{text!r} in the worker log")
        return self.log()

    def child_pids(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def pool_pids(self) -> list[int]:
        """The prefork pool's processes: the children but the span export process."""
        return [pid for pid in self.child_pids() if not is_export_process(pid)]


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
