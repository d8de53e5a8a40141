"""A private redis-server for drain sessions: one database per variant, keyspace events on.

The drain sessions keep several workers alive at once, each on a database of its
own, and learn that a slice has drained from a keyspace notification instead of
polling. Both would change a shared server's configuration, so the benchmark
runs its own: no persistence, as the project's local Redis.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import redis

#: One database per variant, and the staging database 0.
DATABASES = 32
#: ``K``: keyspace channels; ``g``: generic events, among them ``del`` when a
#: list or hash loses its last element.
KEYSPACE_EVENTS = "Kg"
START_TIMEOUT_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """``with PrivateRedis() as server:`` starts it; ``server.url(db)`` names a database."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db)

    def __enter__(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit(
                "bench: redis-server is not on PATH; the drain sessions start a private one"
            )
        self._process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--databases", str(DATABASES)),
                *("--notify-keyspace-events", KEYSPACE_EVENTS),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                self.client().ping()
                return self
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"bench: redis-server did not start on port {self.port}"
                    ) from None
                time.sleep(0.05)

    def __exit__(self, *_: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
