"""A replicated Redis behind three sentinels, on free ports, for failover tests.

The master and its replica persist with AOF (as README, Guarantees asks); the
sentinels run with the timings the failover tests pin:
``down-after-milliseconds 1000`` and ``failover-timeout 5000``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from tests.support.private_redis import PrivateRedis
from tests.support.worker_process import free_port, wait_until

MASTER_NAME = "jobpilot"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
SETTLE_TIMEOUT_SECONDS = 30.0


class SentinelGroup:
    """A master, a replica of it, and three sentinels watching them."""

    def __init__(self, workdir: Path, sentinels: int = 3) -> None:
        self.workdir = workdir
        master_dir, replica_dir = workdir / "master", workdir / "replica"
        master_dir.mkdir()
        replica_dir.mkdir()
        self.master = PrivateRedis(master_dir)
        self.replica = PrivateRedis(replica_dir)
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def urls(self) -> str:
        """The ``sentinel://`` list a worker is given (REDIS_URL)."""
        return ";".join(f"sentinel://127.0.0.1:{port}/0" for port in self.sentinel_ports)

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.extra_args = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replica.start()
        for port in self.sentinel_ports:
            self._sentinels.append(self._start_sentinel(port))
        wait_until(self._settled, SETTLE_TIMEOUT_SECONDS, 0.1, "sentinels that know each other")
        return self

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        conf = self.workdir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.workdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        return subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], socket_timeout=1, decode_responses=True)

    def _settled(self) -> bool:
        """Every sentinel sees the replica and the other sentinels: a failover can happen."""
        others = len(self.sentinel_ports) - 1
        try:
            return all(
                len(self.sentinel(i).sentinel_sentinels(MASTER_NAME)) == others
                and len(self.sentinel(i).sentinel_slaves(MASTER_NAME)) == 1
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
            return int(address[1]) if address else None
        return None

    def stop(self) -> None:
        for process in self._sentinels:
            process.terminate()
        for process in self._sentinels:
            process.wait(10)
        self.replica.stop()
        self.master.stop()
