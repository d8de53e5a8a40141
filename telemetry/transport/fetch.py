"""Reliable fetch: a message leaves its queue only by an atomic move into an in-flight list.

kombu's Redis channel takes a message with ``BRPOP``, which removes it from the
queue, and records it as unacked in a second round trip. Whatever loses the
reply in between (a half-open link, a reset mid-reply, a failover, a main
process killed) loses the message: it is in no list and not in ``unacked``.

Here each connection a channel consumes on gets an id and an in-flight list
``jobpilot:inflight:<id>`` that holds at most one raw item, plus three shared
keys: the hash ``jobpilot:inflight`` (id -> the queue key of its item), and the
sorted sets ``jobpilot:inflight:index`` (id -> the server time by which it must
show life again) and ``jobpilot:inflight:parked`` (id -> when to look at a dead
one again). The channel:

1. runs :data:`FETCH`, which moves the first item of its queue keys (priority
   sub-lists first, queues in kombu's fair-cycle order) into its list, or, when
   every key is empty, names the key it blocks on next;
2. when nothing was found, waits with ``BLMOVE <that key> <its list>``, which
   moves an arriving message just as atomically (``BLMOVE`` has no multi-key
   form, so the other keys are tried again when it times out);
3. runs :data:`RECORD`, which moves the item from its list into kombu's
   ``unacked`` hash and index, before kombu builds the message.

A reply that never arrives leaves the item in the list, and the next fetch on
that connection returns it first: its only delivery, so not a redelivery. A
channel that closes or reconnects gives its list back (:data:`GIVE_BACK`); one
that dies stops refreshing its deadline, and live channels sweep (:data:`SWEEP`)
the lists of ids past their deadline back to their queues. A dead id stays
parked for :data:`PARKED_SECONDS` and is swept once more before it is
forgotten, since a command sent on its connection may still reach the server
late. If a sweep took an item from a channel that was only slow,
:data:`RECORD` finds its list empty and the channel drops its copy: the item
runs once.

The scripts run under ``maxmemory`` with ``noeviction`` too (``allow-oom``):
they move items and grow next to nothing, and a full broker must still be
drained. The shebang flag needs Redis 7.0; on an older server the channel keeps
kombu's ``BRPOP`` (:func:`supports_reliable_fetch`). Keys carry kombu's
``global_keyprefix``; the scripts name keys beyond their ``KEYS`` (other ids'
lists), which Redis allows outside Cluster, and kombu does not support Cluster.
The scripts are in ``telemetry.transport.scripts``.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from telemetry.transport.scripts import ACK, FETCH, GIVE_BACK, RECORD, SWEEP, run

#: The oldest server the scripts run on (``#!lua flags=``).
MIN_REDIS_VERSION = (7, 0)
#: Health-check intervals an id may stay silent before its list is swept.
DEADLINE_INTERVALS = 3
#: How long a dead or closed id is kept (and swept once more) before it is
#: forgotten: longer than TCP keeps retransmitting a command on a dead link
#: (Linux's tcp_retries2 gives up after about 15 minutes).
PARKED_SECONDS = 1200
#: Ids looked at per sweep, at most, in each of the two sets.
SWEEP_LIMIT = 50


def supports_reliable_fetch(client: redis.Redis) -> bool:
    """Whether the server runs the scripts: Redis (or a compatible server) 7.0 or later."""
    version = str(client.info("server").get("redis_version", "0"))
    parts = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    return parts >= MIN_REDIS_VERSION


T = TypeVar("T")


def retried_once(reset: Callable[[], None], operation: Callable[[], T]) -> T:
    """``operation``, and once more on a fresh connection if it timed out or lost its connection.

    Only for idempotent operations (the record, the ack, the sweep). ``reset``
    drops the pool's idle connections first: when one went silent, the others of
    the same moment may be stale too, and the retry must not meet one of them.
    """
    try:
        return operation()
    except (redis.exceptions.TimeoutError, redis.exceptions.ConnectionError):
        reset()
        return operation()


@dataclass(frozen=True)
class Taken:
    """An item now in an id's in-flight list, and the queue key it came from."""

    source: str
    item: bytes


@dataclass(frozen=True)
class InFlightKeys:
    """The shared keys, with kombu's ``global_keyprefix``, and the deadline an id gets."""

    prefix: str
    #: kombu's unacked hash and index, prefixed.
    unacked_key: str
    unacked_index_key: str
    #: Seconds an id may stay silent before others sweep its list.
    deadline: float

    @property
    def hash_key(self) -> str:
        return f"{self.prefix}jobpilot:inflight"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}jobpilot:inflight:index"

    @property
    def parked_key(self) -> str:
        return f"{self.prefix}jobpilot:inflight:parked"

    @property
    def list_prefix(self) -> str:
        return f"{self.prefix}jobpilot:inflight:"

    @property
    def shared(self) -> list[str]:
        return [self.hash_key, self.index_key, self.parked_key]

    def ack(self, client: redis.Redis, tag: str) -> None:
        """kombu's ack: the delivery's unacked record and index entry go."""
        run(client, ACK, [self.unacked_key, self.unacked_index_key], [tag])

    def sweep(self, client: redis.Redis, alive: str = "") -> int:
        """Put back the items of ids past their deadline (and of parked ones that are due),
        moving on the deadline of the live id ``alive`` first; how many went back."""
        args = [self.list_prefix, SWEEP_LIMIT, alive, self.deadline, PARKED_SECONDS]
        return int(run(client, SWEEP, self.shared, args))


class InFlight:
    """One consuming connection's in-flight list and the commands around it."""

    def __init__(self, keys: InFlightKeys) -> None:
        self.keys = keys
        self.id = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
        self.list_key = keys.list_prefix + self.id
        #: The server does not know the script (NOSCRIPT): send its text once.
        self.send_text = False

    def fetch_command(self, queue_keys: Sequence[str], block_key: str) -> list[Any]:
        """The command that takes one item; ``block_key`` is the one a following wait blocks on."""
        head = ["EVAL", FETCH.text] if self.send_text else ["EVALSHA", FETCH.sha]
        self.send_text = False
        listed = [*self.keys.shared, self.list_key, *queue_keys]
        return [*head, len(listed), *listed, self.id, self.keys.deadline, block_key]

    def wait_command(self, block_key: str, timeout: float, sleep: bool) -> list[Any]:
        """Block until a message arrives on ``block_key`` (moved into the list), or ``timeout``.

        With ``sleep`` (the server refused the move for lack of memory) a plain wait
        on the id's own empty list instead: ``BLPOP`` only takes, so it is allowed.
        """
        if sleep:
            return ["BLPOP", self.list_key, timeout]
        return ["BLMOVE", block_key, self.list_key, "RIGHT", "LEFT", timeout]

    @staticmethod
    def parse_fetch(reply: Any) -> Taken | None:
        if not reply:
            return None
        source, item = reply
        return Taken(source.decode() if isinstance(source, bytes) else str(source), item)

    @staticmethod
    def parse_wait(reply: Any, block_key: str) -> Taken | None:
        if not reply or isinstance(reply, list):  # BLPOP on the empty list only times out
            return None
        return Taken(block_key, reply)

    def fetch(self, client: redis.Redis, queue_keys: Sequence[str]) -> Taken | None:
        """A fetch that does not wait (``basic_get``)."""
        listed = [*self.keys.shared, self.list_key, *queue_keys]
        args = [self.id, self.keys.deadline, queue_keys[0]]
        return self.parse_fetch(run(client, FETCH, listed, args))

    def record(
        self, client: redis.Redis, tag: str, exchange: str, routing_key: str, now: float
    ) -> bool:
        """Move the item into kombu's unacked records; False when a sweep took it back.

        kombu's record is ``[message, exchange, routing_key]`` as JSON; the raw item
        is that message's JSON text, so the record is built around it on the server.
        """
        tail = "," + json.dumps(exchange) + "," + json.dumps(routing_key) + "]"
        keys = [self.list_key, self.keys.unacked_key, self.keys.unacked_index_key]
        return bool(run(client, RECORD, keys, [tag, tail, now]))

    def release(self, client: redis.Redis) -> None:
        """Drop the item: delivered to a consumer that acknowledges nothing, or dead-lettered."""
        keys = [self.list_key, self.keys.unacked_key, self.keys.unacked_index_key]
        run(client, RECORD, keys, ["", "", 0])

    def give_back(self, client: redis.Redis) -> int:
        """The id's connection is done: its item goes back to the head of its queue."""
        args = [self.list_key, self.id, PARKED_SECONDS]
        return int(run(client, GIVE_BACK, self.keys.shared, args))
