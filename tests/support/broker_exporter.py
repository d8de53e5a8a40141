"""The broker exporter as users run it: ``python -m telemetry.broker_exporter -A worker``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.endpoints import http_get
from tests.support.process import LoggedProcess, free_port, wait_until

START_TIMEOUT_SECONDS = 30


class ExporterProcess(LoggedProcess):
    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        *args: str,
        app: str = "worker",
        wrap: Callable[..., list[str]] | None = None,
    ) -> None:
        """``wrap``: the command line around the exporter's (``Host.command``, for a
        network namespace); the exporter then listens on ``METRICS_HOST`` in ``env``."""
        self.port = free_port()
        self.host = env.get("METRICS_HOST", "127.0.0.1")
        self.ops_port = free_port()
        full_env = {
            **os.environ,
            "OPS_PORT": str(self.ops_port),
            **env,
            "BROKER_EXPORTER_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", "telemetry.broker_exporter", "-A", app, *args]
        if wrap is not None:
            command = wrap(*command)
        super().__init__(
            "broker exporter", command, full_env, log_dir / f"exporter-{self.port}.log"
        )

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}"

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(self.url + path)

    def start(self) -> ExporterProcess:
        self.spawn()

        def serving() -> bool:
            self.exited()
            try:
                return self.get("/livez")[0] == 200
            except OSError:
                return False

        wait_until(serving, START_TIMEOUT_SECONDS, interval=0.1, message="broker exporter serving")
        return self

    def stop(self, timeout: float = 10) -> int | None:
        return super().stop(timeout)
