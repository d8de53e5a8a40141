"""A private redis-server on a free port, for tests that stop and restart the broker."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.support.worker_process import free_port, wait_until


class PrivateRedis:
    def __init__(self, workdir: Path, port: int | None = None, *extra_args: str) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, password: str | None = None) -> PrivateRedis:
        """Start, then wait until a client (with ``password``, for --requirepass) gets PONG."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, password=password, socket_timeout=0.5)
        wait_until(lambda: self._pings(client), 10, message=f"redis-server on {self.port}")
        return self

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        time.sleep(0.05)
