"""Hosts on one machine: network namespaces joined to this one by veth pairs.

    with Hosts(3) as hosts:
        hosts[0].address      # 10.213.1.2, inside the namespace
        hosts[0].gateway      # 10.213.1.1, this side of the pair: bind servers here
        hosts[0].command(...)  # a command line that runs inside the namespace
        hosts[0].cut(); hosts[0].mend()   # take the link down, and up again

Every namespace, link and address is the test's own and is removed on exit.
Creating them needs CAP_NET_ADMIN. Without it the test fails and says so: a
fleet test that skipped would prove nothing.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from types import TracebackType

import pytest

#: A /16 no test host uses; each namespace gets 10.213.<n>.0/30.
SUBNET = "10.213"


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Host:
    number: int
    namespace: str

    @property
    def link(self) -> str:
        """This side of the veth pair (interface names are at most 15 characters)."""
        return f"jpf{os.getpid() % 10000}h{self.number}"

    @property
    def peer(self) -> str:
        return f"jpf{os.getpid() % 10000}n{self.number}"

    @property
    def gateway(self) -> str:
        return f"{SUBNET}.{self.number}.1"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.number}.2"

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *args]

    def create(self) -> None:
        ip("netns", "add", self.namespace)
        ip("link", "add", self.link, "type", "veth", "peer", "name", self.peer)
        ip("link", "set", self.peer, "netns", self.namespace)
        ip("addr", "add", f"{self.gateway}/30", "dev", self.link)
        ip("link", "set", self.link, "up")
        inside = ["netns", "exec", self.namespace, "ip"]
        ip(*inside, "addr", "add", f"{self.address}/30", "dev", self.peer)
        ip(*inside, "link", "set", self.peer, "up")
        ip(*inside, "link", "set", "lo", "up")

    def cut(self) -> None:
        ip("link", "set", self.link, "down")

    def mend(self) -> None:
        ip("link", "set", self.link, "up")

    def remove(self) -> None:
        # Deleting the namespace deletes its end of the pair, and with it this one.
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.link], capture_output=True, timeout=10)


class Hosts:
    def __init__(self, count: int, first: int = 1) -> None:
        """``first``: the number of the first host, so that tests running at the same
        time on one machine (each with hosts of its own) use different subnets."""
        self.hosts = [Host(n, f"jp-fleet-{os.getpid()}-{n}") for n in range(first, first + count)]

    def __enter__(self) -> list[Host]:
        try:
            for host in self.hosts:
                host.create()
        except OSError as exc:
            self.remove()
            pytest.fail(
                f"FAILED LOUDLY: cannot create network namespaces ({exc}); the fleet test "
                "needs root (CAP_NET_ADMIN) and iproute2, which .ci/run installs",
                pytrace=False,
            )
        return self.hosts

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()

    def remove(self) -> None:
        for host in self.hosts:
            host.remove()
