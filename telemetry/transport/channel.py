"""kombu's Redis transport with a channel that validates every item and fetches it reliably.

Registered under kombu's ``redis``, ``rediss``, ``unix`` and ``sentinel`` aliases
(:func:`register`), so every ``kombu.Connection`` of the process uses it for those
URLs, including one that ``Connection.switch()`` re-derives from the next URL of a
failover list, and the app's URL keeps its real scheme (``as_uri()``), which tools
such as Flower parse. ``sentinel://`` gets the same channel on top of kombu's
``SentinelChannel``, which finds the master through Sentinel.

A connection that carries a :class:`~telemetry.deadletters.policy.PoisonPolicy`
(the transport option ``POLICY_OPTION``, which the worker's dead-lettering
consumer sets on the connection it consumes from) has every popped item
judged by :func:`~telemetry.deadletters.validation.judge` against it: an item
that fails is moved to the dead-letter list as read and never reaches kombu's
``Message``. Any other connection of the process (a producer's, another app's,
plain kombu) delivers what it pops as kombu's own channel does.

Messages are taken by reliable fetch (``telemetry.transport.reliable`` and
``fetch``): they leave their queue only by an atomic move into an in-flight list
and are recorded as unacked before kombu sees them, so no lost reply loses one.
A silent consuming connection is a lost connection (``telemetry.transport.poller``).

``_brpop_read`` and ``_get`` are private kombu methods, copied from kombu 5.7
with one change each where kombu's path is kept (validation before delivery;
``_get`` also keeps an empty item, which kombu pops and drops, when it
validates); the reliable path overrides ``_brpop_start`` too. kombu is pinned to
5.7.x in ``pyproject.toml`` and the real-worker tests cover every path.

The channel also reuses one redis-py client per connection pool where kombu
builds a new one for every call (``conn_or_acquire``): on a worker that is two
per task (the reservation and the ack) and one per publish. A client only
wraps the pool, and building one copies redis-py's whole response-callback
table, which cost the worker's main process about a sixth of its time on
no-op tasks.

Its clients make no client spans (``telemetry.tracing.untraced``): with
``opentelemetry-instrumentation-redis`` active, kombu's own commands (the
reservations, acks, heartbeats, binding refreshes and publishes) run under
``suppress_instrumentation()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from queue import Empty
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from telemetry.deadletters.policy import DEFAULT_POLICY, POLICY_OPTION, PoisonPolicy
from telemetry.deadletters.validation import is_control_queue, judge
from telemetry.deadletters.writer import DeadLetterWriter
from telemetry.tracing.untraced import untraced, untraced_factory
from telemetry.transport.poller import SILENCE_CHECK_SECONDS, Poller
from telemetry.transport.reliable import ReliableFetch

#: The longest the reachability probe after a silence waits, to connect and for PONG.
PROBE_SECONDS = 5.0


class Channel(ReliableFetch, kombu_redis.Channel):
    _deadletters: DeadLetterWriter | None = None
    _shared_client: Any = None
    _script_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """The given client, else this channel's one client on its current pool.

        Sharing is safe: each command and pipeline checks a connection out of the
        pool. A new pool (after a reconnect) gets a new client.
        """
        self._check_reachable()
        if client:
            yield client
            return
        self._check_open()
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared

    def scripts(self) -> redis.Redis:
        """A plain client on the channel's pool, for reliable fetch's scripts: they prefix
        their keys themselves, and kombu's prefixed client would prefix the first again."""
        self._check_reachable()
        self._check_open()
        client = self._script_client
        if client is None or client.connection_pool is not self.pool:
            client = self._script_client = untraced(redis.Redis)(connection_pool=self.pool)
        return client  # type: ignore[no-any-return]

    def _check_open(self) -> None:
        if self._pool is None and getattr(self.connection, "client", None) is None:
            # Closing after a broker fault, the transport has let go of its connection
            # and no pool can be built. kombu's own client would fail here with an
            # AttributeError that nothing catches, and the worker would exit. A
            # connection error is what the callers (restoring unacked messages, acks
            # while the hub closes) handle; those messages come back once their
            # visibility timeout passes.
            raise redis.exceptions.ConnectionError("the broker connection is closed")

    def _check_reachable(self) -> None:
        """On a channel abandoned after a loss, every command (while closing) first learns
        whether the broker answers at all: one probe per loss, then remembered."""
        if self._abandoned:
            cycle = getattr(self.connection, "cycle", None)
            if not isinstance(cycle, Poller) or not cycle.reachable(self._probe):
                raise redis.exceptions.ConnectionError("the broker does not answer")

    def _probe(self) -> bool:
        """PING on a new connection, within the pool's connect timeout (at most
        :data:`PROBE_SECONDS` each way, whatever the app set)."""
        try:
            self._check_open()
            connection = self.pool.make_connection()
        except (redis.exceptions.RedisError, OSError):
            return False
        for attribute in ("socket_timeout", "socket_connect_timeout"):
            given = getattr(connection, attribute, None)
            setattr(connection, attribute, min(given or PROBE_SECONDS, PROBE_SECONDS))
        try:
            connection.connect()
            connection.send_command("PING")
            return bool(connection.read_response())
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            connection.disconnect()

    def _get_client(self) -> Any:
        """kombu's client class (or its prefixing partial), making no client spans."""
        return untraced_factory(super()._get_client())

    @cached_property
    def poison_policy(self) -> PoisonPolicy | None:
        """The policy the connection carries; read at the first pop, after the consumer set it."""
        policy = (self.connection.client.transport_options or {}).get(POLICY_OPTION)
        return policy if isinstance(policy, PoisonPolicy) else None

    @property
    def deadletters(self) -> DeadLetterWriter:
        if self._deadletters is None:
            self._deadletters = DeadLetterWriter.for_connection(
                self.connection.client, self.poison_policy or DEFAULT_POLICY
            )
        return self._deadletters

    def _accept(self, queue: str, item: bytes) -> dict[str, Any] | None:
        """The parsed envelope to deliver, or None once the item is dead-lettered."""
        policy = self.poison_policy
        if policy is None:
            return loads(bytes_to_str(item))  # type: ignore[no-any-return]  # kombu's own
        verdict = judge(
            item,
            policy.max_message_bytes,
            task_message=not is_control_queue(queue),
            accept=policy.accept,
        )
        if verdict.payload is not None:
            return verdict.payload
        assert verdict.reason is not None
        self.deadletters.write(queue, verdict.reason, verdict.task, verdict.id, item)
        return None

    def _deliver_popped(self, dest__item: Any) -> bool:
        """kombu's ``_brpop_read`` after the reply: the item left its queue with it."""
        if not dest__item:
            raise Empty()
        dest, item = dest__item
        dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
        self._queue_cycle.rotate(dest)
        payload = self._accept(dest, item)
        if payload is not None:
            self.connection._deliver(payload, dest)
        return True

    def _pop(self, queue: str) -> dict[str, Any]:
        """kombu's ``_get``."""
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, pri))
                if item is None or (not item and self.poison_policy is None):
                    continue  # kombu tests `if item:`, dropping an empty item; we keep it
                self._maybe_update_queues_expire(client, queue)
                payload = self._accept(queue, item)
                if payload is not None:
                    return payload
                raise Empty()

            self._maybe_update_queues_expire(client, queue)
            raise Empty()


class Transport(kombu_redis.Transport):
    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle: Any = Poller()

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        cycle: Any = self.cycle
        old = getattr(cycle, "_inflight_tref", None)
        if old is not None:
            old.cancel()
        super().register_with_event_loop(connection, loop)
        # kombu looks for a silent connection every health_check_interval; every
        # second here, so a silence is noticed within a second of its limit.
        cycle._brpop_health_tref.cancel()
        cycle._brpop_health_tref = loop.call_repeatedly(
            SILENCE_CHECK_SECONDS, cycle.maybe_check_brpop_health
        )
        interval = connection.client.transport_options.get(
            "health_check_interval", kombu_redis.DEFAULT_HEALTH_CHECK_INTERVAL
        )
        if interval:
            cycle._inflight_tref = loop.call_repeatedly(interval, cycle.maybe_keep_inflight)


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """Ours, connected to the master that Sentinel names (kombu's ``SentinelChannel``)."""


class SentinelTransport(Transport, kombu_redis.SentinelTransport):
    """kombu's Sentinel transport (its default port), with our channel and poller."""

    Channel = SentinelChannel
