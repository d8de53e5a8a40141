"""Silent network faults between one network namespace and a Redis on this side of its link.

    faults = Faults(host, server)       # host: tests.support.netns.Host; server: PrivateRedis
    healed = faults.forget()            # every connection from the namespace, silently
    faults.blackhole(); faults.clear()  # nothing passes to Redis, then everything does
    faults.lose(0.2, port)              # 20% of the packets to and from ``port``, each way

``forget`` is what a NAT or load-balancer timeout does: the namespace's existing
connections are dropped both ways (iptables inside the namespace), Redis
``CLIENT KILL``s them, and ``ss -K`` removes the sockets Redis leaves behind on
this side. It returns the moment the network "heals": Redis has forgotten the
old connections and new ones pass. The old ports stay dropped, or with
``keep_dropped=False`` the drop is lifted again.

Every rule lives in a chain of the namespace's own (``TRANSIT``), jumped to from
its INPUT and OUTPUT, so nothing outside the namespace is touched; ``clear``
empties the chain, and deleting the namespace removes the rest.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

import redis

from tests.support.netns import Host
from tests.support.private_redis import PrivateRedis

CHAIN = "TRANSIT"


def run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise OSError(f"{' '.join(args)}: {done.stderr.strip()}")


class Faults:
    def __init__(self, host: Host, server: PrivateRedis) -> None:
        self.host = host
        self.server = server
        self.client = redis.Redis(port=server.port, socket_timeout=5)
        self.iptables(["-N", CHAIN])
        self.iptables(["-I", "INPUT", "-j", CHAIN])
        self.iptables(["-I", "OUTPUT", "-j", CHAIN])

    def iptables(self, args: list[str]) -> None:
        run(self.host.command("iptables", "-w", *args))

    def ports(self, name: str | None = None) -> list[int]:
        """The namespace-side ports of Redis's clients from the namespace (named ``name``)."""
        ports = []
        for client in self.client.client_list():
            address, _, port = str(client["addr"]).rpartition(":")
            if address == self.host.address and (name is None or client.get("name") == name):
                ports.append(int(port))
        return ports

    def ports_of(self, pids: set[int]) -> list[int]:
        """The local ports of the namespace's connections to Redis owned by ``pids`` alone
        (a forked process also holds the sockets it inherited from its parent)."""
        args = self.host.command("ss", "-tnpH", "dst", self.host.gateway)
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=True)
        ports = []
        for line in done.stdout.splitlines():
            fields = line.split()
            if len(fields) < 6 or not fields[4].endswith(f":{self.server.port}"):
                continue
            owners = {int(part[4:]) for part in fields[5].split(",") if part.startswith("pid=")}
            if owners and owners <= pids:
                ports.append(int(fields[3].rpartition(":")[2]))
        return ports

    def forget(self, ports: list[int] | None = None, keep_dropped: bool = True) -> float:
        """Silently end ``ports`` (every connection from the namespace by default); returns
        when the network heals (``time.monotonic()``)."""
        ports = self.ports() if ports is None else ports
        rules = [
            rule
            for port in ports
            for rule in (["-p", "tcp", "--sport", str(port)], ["-p", "tcp", "--dport", str(port)])
        ]
        for rule in rules:
            self.iptables(["-A", CHAIN, *rule, "-j", "DROP"])
        for port in ports:
            with contextlib.suppress(redis.ResponseError):  # it had closed already
                self.client.execute_command("CLIENT", "KILL", f"{self.host.address}:{port}")
            run(["ss", "-K", "-tn", "dst", self.host.address, "dport", "=", f":{port}"])
        if not keep_dropped:
            for rule in rules:
                self.iptables(["-D", CHAIN, *rule, "-j", "DROP"])
        return time.monotonic()

    def blackhole(self, port: int | None = None) -> None:
        """Nothing passes between the namespace and Redis (or ``port``), both ways."""
        port = port or self.server.port
        self.iptables(["-A", CHAIN, "-p", "tcp", "--dport", str(port), "-j", "DROP"])
        self.iptables(["-A", CHAIN, "-p", "tcp", "--sport", str(port), "-j", "DROP"])

    def lose(self, share: float, port: int) -> None:
        """Drop ``share`` of the packets to and from ``port``, at random, each way."""
        for direction in ("--dport", "--sport"):
            self.iptables(
                [
                    "-A", CHAIN, "-p", "tcp", direction, str(port),
                    "-m", "statistic", "--mode", "random", "--probability", str(share),
                    "-j", "DROP",
                ]
            )  # fmt: skip

    def clear(self) -> None:
        self.iptables(["-F", CHAIN])
