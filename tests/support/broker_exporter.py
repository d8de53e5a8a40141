"""The broker exporter as users run it: ``python -m telemetry.broker_exporter -A worker``."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.worker_process import ROOT, free_port, wait_until

START_TIMEOUT_SECONDS = 30


class ExporterProcess:
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
        self.env = {
            **os.environ,
            "OPS_PORT": str(self.ops_port),
            **env,
            "BROKER_EXPORTER_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }
        self.args = [sys.executable, "-m", "telemetry.broker_exporter", "-A", app, *args]
        if wrap is not None:
            self.args = wrap(*self.args)
        self.log_path = log_dir / f"exporter-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def start(self) -> ExporterProcess:
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def serving() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log()
            try:
                return self.get("/livez")[0] == 200
            except OSError:
                return False

        wait_until(serving, START_TIMEOUT_SECONDS, interval=0.1, message="broker exporter serving")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode
