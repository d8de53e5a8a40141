"""Queue depth and oldest-message age, and kombu's unacked records, polled from Redis in the background.

One pipelined round trip per poll, whatever the number of queues: for every
priority sub-list of every queue, ``LLEN`` and ``LINDEX -1`` (the oldest item);
``HLEN`` of kombu's unacked hash and the first entry of its index (a sorted set
scored by delivery time); plus, for each failed-work set the app keeps (dead
letters, exhausted tasks), its keep script (``telemetry.failed.store``), which
drains the old dead-letter list, trims by age and caps, and answers the size.
Keys are built from the broker's
transport options exactly as kombu's ``Channel._q_for_pri`` builds them
(``global_keyprefix``, ``sep``, ``priority_steps``), and read with a plain
redis-py client with explicit prefixes, because kombu's prefixed client does not
prefix ``LINDEX``.

* Depth is ``LLEN`` summed over the sub-lists. Messages held unacked by workers
  are not waiting, so they are not in it: they are the unacked count, fleet-wide,
  and the oldest of them is as old as its first delivery. At the visibility
  timeout kombu restores it to its queue.
* Age is the largest age among the sub-lists' oldest items, read from our
  ``x-jobpilot-published-at`` header with a regular expression, so a large body
  is never parsed. A message without the header (from a producer that did not
  call ``telemetry.install``) counts in the depth but not in the age.

Every worker exports the same values; dashboards aggregate with ``max by (queue)``.
``/metrics`` only reads the gauges: a scrape performs no network I/O.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from kombu.transport.redis import Channel as RedisChannel

from telemetry.broker import broker_redis
from telemetry.failed.records import Kind
from telemetry.failed.store import FailedStore
from telemetry.log_throttle import LogThrottle
from telemetry.messages import PUBLISHED_AT_HEADER
from telemetry.metrics.catalogue import BrokerMetrics

logger = logging.getLogger("telemetry.metrics.queues")

#: A poll must never hang its thread on a dead broker.
POLL_SOCKET_TIMEOUT = 1.0
KOMBU_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
_PUBLISHED_AT = re.compile(rb'"' + re.escape(PUBLISHED_AT_HEADER.encode()) + rb'":\s*([0-9.eE+-]+)')


def priority_keys(queue: str, transport_options: Mapping[str, Any]) -> list[str]:
    """The Redis lists holding ``queue``'s messages, one per priority step."""
    prefix = str(transport_options.get("global_keyprefix", "") or "")
    sep = str(transport_options.get("sep", KOMBU_SEP))
    steps = transport_options.get("priority_steps", KOMBU_PRIORITY_STEPS)
    keys = [prefix + (f"{queue}{sep}{step}" if step else queue) for step in steps]
    return list(dict.fromkeys(keys))


def published_at(item: bytes | None) -> float | None:
    if not item:
        return None
    match = _PUBLISHED_AT.search(item)
    if match is None:
        return None
    try:
        return float(match.group(1))
    except ValueError:
        return None


def unacked_keys(transport_options: Mapping[str, Any]) -> tuple[str, str]:
    """kombu's unacked hash and its index, as kombu's Redis channel names them."""
    prefix = str(transport_options.get("global_keyprefix", "") or "")
    hash_key = transport_options.get("unacked_key", RedisChannel.unacked_key)
    index_key = transport_options.get("unacked_index_key", RedisChannel.unacked_index_key)
    return prefix + str(hash_key), prefix + str(index_key)


@dataclass(frozen=True)
class QueueReading:
    depth: int
    oldest_age: float


@dataclass(frozen=True)
class PollReading:
    """One poll: each queue's reading, the unacked count and oldest age, and the
    size of each failed-work set polled (by kind)."""

    queues: dict[str, QueueReading]
    unacked: int
    oldest_unacked_age: float
    failed: dict[str, int]


class QueuePoller:
    """Reads every queue's depth and age in one pipeline and sets the gauges."""

    def __init__(
        self,
        client: redis.Redis,
        queues: Iterable[str],
        transport_options: Mapping[str, Any],
        failed: Mapping[str, FailedStore],
        metrics: BrokerMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``failed``: the failed-work sets to keep and size, by kind (``telemetry.failed``)."""
        self.client = client
        self.transport_options = transport_options
        self.keys = {queue: priority_keys(queue, transport_options) for queue in queues}
        self.unacked_key, self.unacked_index_key = unacked_keys(transport_options)
        self.failed = dict(failed)
        self.metrics = metrics
        self.clock = clock
        self.round_trips = 0
        self._log = LogThrottle()

    @classmethod
    def for_app(
        cls,
        app: Celery,
        queues: Iterable[str],
        failed: Mapping[str, FailedStore],
        metrics: BrokerMetrics,
    ) -> QueuePoller:
        """The poller of ``app``'s broker, with its transport options and a short socket timeout."""
        return cls(
            broker_redis(app, socket_timeout=POLL_SOCKET_TIMEOUT),
            queues,
            app.conf.broker_transport_options or {},
            failed,
            metrics,
        )

    def watch(self, queues: Iterable[str]) -> None:
        """Poll these queues from the next poll on; a queue no longer polled loses its series."""
        wanted = set(queues)
        if wanted == set(self.keys):
            return
        for queue in set(self.keys) - wanted:
            for gauge in (self.metrics.queue_depth, self.metrics.queue_oldest_age):
                with contextlib.suppress(KeyError):
                    gauge.remove(queue)
        self.keys = {
            queue: priority_keys(queue, self.transport_options) for queue in sorted(wanted)
        }

    def read(self) -> PollReading:
        """One round trip for every reading (two when the server lacks the keep script)."""
        polled = self.keys  # one snapshot: watch() may replace it from another thread
        try:
            replies = self._round_trip(polled)
        except redis.exceptions.NoScriptError:
            for store in self.failed.values():
                store.load()  # a restarted or newly promoted server
            replies = self._round_trip(polled)
        now = self.clock()
        readings: dict[str, QueueReading] = {}
        position = 0
        for queue, keys in polled.items():
            depth, age = 0, 0.0
            for _ in keys:
                length, oldest = replies[position], replies[position + 1]
                position += 2
                depth += int(length or 0)
                stamp = published_at(oldest)
                if stamp is not None:
                    age = max(age, now - stamp)
            readings[queue] = QueueReading(depth, age)
        unacked, first = int(replies[position] or 0), replies[position + 1]
        oldest_unacked_age = max(0.0, now - float(first[0][1])) if first else 0.0
        position += 2
        sizes: dict[str, int] = {}
        for kind, store in self.failed.items():
            kept = store.kept(replies[position])
            position += 1
            if kept.legacy_left and kept.drained:
                kept = store.maintain()  # a backlog on the old list: drain it now
            sizes[kind] = kept.size
        return PollReading(readings, unacked, oldest_unacked_age, sizes)

    def _round_trip(self, polled: Mapping[str, list[str]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for keys in polled.values():
            for key in keys:
                pipe.llen(key)
                pipe.lindex(key, -1)
        pipe.hlen(self.unacked_key)
        pipe.zrange(self.unacked_index_key, 0, 0, withscores=True)
        for store in self.failed.values():
            store.keep_in(pipe)
        replies: list[Any] = pipe.execute()
        self.round_trips += 1
        return replies

    def poll(self) -> bool:
        """Update the gauges; on failure keep the last values (their freshness gauge says so)."""
        try:
            reading = self.read()
        except (redis.RedisError, OSError, ValueError, TypeError, IndexError) as exc:
            if self._log.due():
                logger.warning("queue depth poll failed: %s", type(exc).__name__)
            return False
        for queue, queue_reading in reading.queues.items():
            self.metrics.queue_depth.labels(queue).set(queue_reading.depth)
            self.metrics.queue_oldest_age.labels(queue).set(queue_reading.oldest_age)
        self.metrics.unacked_messages.set(reading.unacked)
        self.metrics.oldest_unacked_age.set(reading.oldest_unacked_age)
        for kind, size in reading.failed.items():
            gauge = (
                self.metrics.deadletter_size
                if kind == Kind.DEAD_LETTER
                else self.metrics.exhausted_size
            )
            gauge.set(size)
        self.metrics.queue_poll_last_success.set(self.clock())
        return True


class PollingThread:
    """Calls ``poll`` every ``interval`` seconds until stopped."""

    def __init__(self, poll: Callable[[], Any], interval: float, name: str) -> None:
        self.poll = poll
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)
