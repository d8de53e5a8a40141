"""A real ``celery -A <app> beat`` subprocess, started, paused and stopped by tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.scrape import samples_by_labels
from tests.support.worker_process import ROOT, START_TIMEOUT_SECONDS, free_port, wait_until

#: The jobpilot app with a fast test schedule (``tests.support.beat_app``).
JOBPILOT_BEAT = "tests.support.beat_app"


class BeatProcess:
    """One beat, logging to a file, serving its telemetry on a free port."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        app: str = JOBPILOT_BEAT,
        schedule: Path | None = None,
    ) -> None:
        """``schedule``: the PersistentScheduler's file (a new one in ``log_dir`` by default)."""
        self.name = f"b{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "BEAT_METRICS_PORT": str(free_port()),
            "METRICS_RENDER_INTERVAL": "0",
            "READINESS_INTERVAL": "0.5",
            # Spans are made but not exported: no collector runs here, and a producer's
            # first attempts at an unreachable one stall its thread (beat's loop) for a while.
            "OTEL_TRACES_EXPORTER": "none",
            **env,
            "PYTHONUNBUFFERED": "1",
        }
        self.port = int(self.env["BEAT_METRICS_PORT"])
        self.target = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{self.name}.log"
        self.schedule = schedule or log_dir / f"{self.name}-schedule"
        self.args = [
            *(sys.executable, "-m", "celery", "-A", app, "beat", "--loglevel", "INFO"),
            *("--schedule", str(self.schedule), "-n", f"{self.name}@%h"),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> BeatProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self) -> None:
        def serving() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"beat exited ({self.process.returncode}):\n{self.log()[-4000:]}"
                )
            with contextlib.suppress(OSError):
                return self.fetch("/livez")[0] in {200, 503}
            return False

        wait_until(serving, START_TIMEOUT_SECONDS, interval=0.1, message=f"{self.name} serving")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def fetch(self, path: str) -> tuple[int, bytes]:
        """(status, body) of ``path``; 503 is an answer, not an error."""
        try:
            with urllib.request.urlopen(f"http://{self.target}{path}", timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def livez(self) -> tuple[int, dict[str, Any]]:
        status, body = self.fetch("/livez")
        return status, json.loads(body)

    def readyz(self) -> tuple[int, dict[str, Any]]:
        status, body = self.fetch("/readyz")
        return status, json.loads(body)

    def samples(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        return samples_by_labels(f"http://{self.target}/metrics")

    def value(self, sample: str, **labels: str) -> float | None:
        return self.samples()[sample].get(tuple(sorted(labels.items())))

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (beat syncs its schedule and exits), escalating to SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)  # a paused beat could not stop
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()
        finally:
            self._log.close()

    def kill(self) -> int:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)
