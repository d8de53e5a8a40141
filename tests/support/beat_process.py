"""A real ``celery -A <app> beat`` subprocess, started, paused and stopped by tests."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.endpoints import http_get
from tests.support.process import LoggedProcess, free_port, wait_until
from tests.support.scrape import samples_by_labels
from tests.support.worker_process import START_TIMEOUT_SECONDS

#: The jobpilot app with a fast test schedule (``tests.support.beat_app``).
JOBPILOT_BEAT = "tests.support.beat_app"


class BeatProcess(LoggedProcess):
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
        full_env = {
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
        self.port = int(full_env["BEAT_METRICS_PORT"])
        self.target = f"127.0.0.1:{self.port}"
        self.schedule = schedule or log_dir / f"{self.name}-schedule"
        args = [
            *(sys.executable, "-m", "celery", "-A", app, "beat", "--loglevel", "INFO"),
            *("--schedule", str(self.schedule), "-n", f"{self.name}@%h"),
        ]
        super().__init__("beat", args, full_env, log_dir / f"{self.name}.log")

    def start(self, wait: bool = True) -> BeatProcess:
        self.spawn()
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self) -> None:
        def serving() -> bool:
            self.exited()
            with contextlib.suppress(OSError):
                return self.fetch("/livez")[0] in {200, 503}
            return False

        wait_until(serving, START_TIMEOUT_SECONDS, interval=0.1, message=f"{self.name} serving")

    def fetch(self, path: str) -> tuple[int, bytes]:
        """(status, body) of ``path``; 503 is an answer, not an error."""
        return http_get(f"http://{self.target}{path}")

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

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (beat syncs its schedule and exits), escalating to SIGKILL."""
        return super().stop(timeout)
