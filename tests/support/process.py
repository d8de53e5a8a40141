"""A subprocess a test starts: logging to a file, in a session of its own, stopped after.

    process = LoggedProcess("worker w1", args, env, log_path).spawn()
    process.log(); process.exited(); process.stop(); process.kill()

The worker, beat and broker exporter helpers (``worker_process``, ``beat_process``,
``broker_exporter``) build their command lines on it and add how each one says it
is ready.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
#: Characters of a process's log shown when it exits early.
EXIT_LOG_TAIL = 4000


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


class LoggedProcess:
    """``args`` run in ``cwd``, stdout and stderr appended to ``log_path``."""

    def __init__(
        self,
        what: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path = ROOT,
    ) -> None:
        """``what``: how failure messages name it (``worker``, ``beat``, ...)."""
        self.what = what
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def spawn(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def exited(self) -> None:
        """Fail, with the end of the log, if the process has exited (for start-up waits)."""
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"{self.what} exited ({self.process.returncode}):\n{self.log()[-EXIT_LOG_TAIL:]}"
            )

    def wait_exit(self, timeout: float) -> int:
        """The exit code of a process expected to stop by itself (a refused start)."""
        assert self.process is not None
        return self.process.wait(timeout)

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (a paused process is continued first), escalating to SIGKILL of the group."""
        if self.process is None or self.process.poll() is not None:
            self._close_log()
            return self.process.returncode if self.process else None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()
        finally:
            self._close_log()

    def kill(self) -> int:
        """SIGKILL the process and everything in its session's group, as a crash would."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
