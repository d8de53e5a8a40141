"""A replicated Redis behind three sentinels, on free ports: the failover suite and tests use it.

The master and its replica persist with AOF (as docs/guarantees.md asks); the
sentinels run with the timings the failover test pins:
``down-after-milliseconds 1000`` and ``failover-timeout 5000``. Given a
:class:`Tls`, every server listens on TLS only, and the servers speak TLS to
each other. Given :class:`Passwords`, the master and replica require one and
the sentinels another, as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from bench.redis_server import free_port

MASTER_NAME = "jobpilot"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
SETTLE_TIMEOUT_SECONDS = 30.0


START_TIMEOUT_SECONDS = 10.0


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Tls:
    """A server certificate and key, and the CA that signed it (for 127.0.0.1)."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    def server_options(self, port: int) -> dict[str, str]:
        """TLS only on ``port``, to clients and between the servers; clients need no certificate."""
        return {
            "port": "0",
            "tls-port": str(port),
            "tls-cert-file": str(self.cert_file),
            "tls-key-file": str(self.key_file),
            "tls-ca-cert-file": str(self.ca_file),
            "tls-auth-clients": "no",
            "tls-replication": "yes",
        }

    def client_options(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca_file), "ssl_cert_reqs": "required"}


@dataclass(frozen=True)
class Passwords:
    master: str
    sentinels: str


def client(port: int, tls: Tls | None, **options: Any) -> redis.Redis:
    """A client of the server on ``port`` of this host, over TLS when ``tls`` is given."""
    return redis.Redis(
        host="127.0.0.1", port=port, **(tls.client_options() if tls else {}), **options
    )


class RedisNode:
    """One redis-server with AOF (``appendfsync always``) in its own directory; restartable."""

    def __init__(self, workdir: Path, tls: Tls | None = None, password: str | None = None) -> None:
        self.workdir = workdir
        self.tls = tls
        self.password = password
        self.port = free_port()
        self.extra_args: tuple[str, ...] = ()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisNode:
        self.workdir.mkdir(exist_ok=True)
        listen = self.tls.server_options(self.port) if self.tls else {"port": str(self.port)}
        self.process = subprocess.Popen(
            [
                "redis-server",
                *(arg for name, value in listen.items() for arg in (f"--{name}", value)),
                *("--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
                # A replica's first full sync starts at once, not after Redis's 5 s wait.
                *("--repl-diskless-sync-delay", "0"),
                *(
                    ("--requirepass", self.password, "--masterauth", self.password)
                    if self.password
                    else ()
                ),
                *("--dir", str(self.workdir), *self.extra_args),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = self.client(socket_timeout=0.5)
        wait_for(lambda: _pings(probe), START_TIMEOUT_SECONDS, f"redis-server on {self.port}")
        return self

    def client(self, **options: Any) -> redis.Redis:
        return client(self.port, self.tls, password=self.password, **options)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _count(reply: object) -> int:
    """The length of a SENTINEL listing (redis-py types it as a list or a bool)."""
    return len(reply) if isinstance(reply, list) else 0


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class SentinelGroup:
    """A master, a replica of it, and three sentinels watching them."""

    def __init__(
        self,
        workdir: Path,
        sentinels: int = 3,
        tls: Tls | None = None,
        passwords: Passwords | None = None,
    ) -> None:
        self.workdir = workdir
        self.tls = tls
        self.passwords = passwords
        master_password = passwords.master if passwords else None
        self.master = RedisNode(workdir / "master", tls, master_password)
        self.replica = RedisNode(workdir / "replica", tls, master_password)
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def urls(self) -> str:
        """The ``sentinel://`` list a worker is given (REDIS_URL), with the master's password."""
        auth = f":{self.passwords.master}@" if self.passwords else ""
        return ";".join(f"sentinel://{auth}127.0.0.1:{port}/0" for port in self.sentinel_ports)

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.extra_args = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replica.start()
        for port in self.sentinel_ports:
            self._sentinels.append(self._start_sentinel(port))
        wait_for(self._settled, SETTLE_TIMEOUT_SECONDS, "sentinels that know each other")
        return self

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        conf = self.workdir / f"sentinel-{port}.conf"
        listen = self.tls.server_options(port) if self.tls else {"port": str(port)}
        conf.write_text(
            "".join(f"{name} {value}\n" for name, value in listen.items()) + "bind 127.0.0.1\n"
            f"dir {self.workdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            + (
                f"requirepass {self.passwords.sentinels}\n"
                f"sentinel sentinel-pass {self.passwords.sentinels}\n"
                f"sentinel auth-pass {MASTER_NAME} {self.passwords.master}\n"
                if self.passwords
                else ""
            )
        )
        return subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def producer(self) -> Celery:
        """A plain producer app (no telemetry) that finds the master through the sentinels,
        on this project's transports as the app's own producers are."""
        from telemetry import transport

        transport.register()
        return Celery(
            "sentinel-producer",
            broker=self.urls,
            broker_transport_options={"master_name": MASTER_NAME},
            task_serializer="json",
            accept_content=["json"],
        )

    def promoted(self) -> bool:
        """Whether the sentinels name the replica as the master."""
        return self.master_port() == self.replica.port

    def sentinel(self, index: int = 0) -> redis.Redis:
        password = self.passwords.sentinels if self.passwords else None
        return client(
            self.sentinel_ports[index],
            self.tls,
            password=password,
            socket_timeout=1,
            decode_responses=True,
        )

    def _settled(self) -> bool:
        """The replica is in sync, and every sentinel sees it and the other sentinels."""
        others = len(self.sentinel_ports) - 1
        try:
            replication = self.replica.client(socket_timeout=1).info("replication")
            return replication.get("master_link_status") == "up" and all(
                _count(self.sentinel(i).sentinel_sentinels(MASTER_NAME)) == others
                and _count(self.sentinel(i).sentinel_slaves(MASTER_NAME)) == 1
                for i in range(len(self.sentinel_ports))
            )
        except redis.RedisError:
            return False

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for index in range(len(self.sentinel_ports)):
            try:
                address = self.sentinel(index).sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            return int(address[1]) if isinstance(address, (list, tuple)) else None
        return None

    def stop(self) -> None:
        for process in self._sentinels:
            process.terminate()
        for process in self._sentinels:
            process.wait(10)
        self.replica.stop()
        self.master.stop()
