"""The consuming side of reliable fetch, mixed into our kombu Redis channel.

``ReliableFetch`` replaces the channel's ``BRPOP`` with the in-flight list of
``telemetry.transport.fetch``: ``_brpop_start`` sends :data:`~fetch.FETCH` (or,
after one that found nothing, the blocking ``BLMOVE``), ``_brpop_read`` reads
the reply, validates the item, records it as unacked and delivers it, and the
QoS skips kombu's own record for it. ``basic_get`` takes the same way, without
waiting. Each health-check interval the channel moves on its deadline and
sweeps silent consumers' lists (:meth:`keep_inflight`); ``close`` gives its list
back. Acks, rejects and records are retried once on a fresh connection when
they time out; they are idempotent.

With the transport option ``reliable_fetch: False``, or on a server older than
Redis 7.0, every method takes kombu's path (the channel's ``_deliver_popped``
and ``_pop``, which validate what kombu pops).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from functools import cached_property
from queue import Empty
from time import monotonic, time
from typing import Any, TypeVar

import redis
from kombu.transport import virtual
from kombu.transport.redis import DEFAULT_HEALTH_CHECK_INTERVAL, _socket_readable
from kombu.transport.redis import QoS as KombuQoS

from telemetry.transport.fetch import (
    DEADLINE_INTERVALS,
    InFlight,
    InFlightKeys,
    Taken,
    retried_once,
    supports_reliable_fetch,
)

logger = logging.getLogger("telemetry.transport")

#: How long a reliable consumer blocks on its head queue before it looks at every
#: key again, unless the app set kombu's ``polling_interval``. ``BLMOVE`` watches
#: one key: a message on another waits at most this long when the worker is idle.
WAIT_SECONDS = 0.25
#: After the server refused the blocking move for lack of memory, sleep instead of
#: moving for this long (``maxmemory`` with ``noeviction``).
OOM_SLEEP_SECONDS = 60.0
FETCH, WAIT = "fetch", "wait"

T = TypeVar("T")


class QoS(KombuQoS):
    """kombu's unacked bookkeeping. A message the channel recorded is not recorded
    twice; acks and rejects are retried once on a fresh connection when they time out,
    and with reliable fetch an ack is one script, which a full broker still runs."""

    channel: Any

    def append(self, message: Any, delivery_tag: str) -> None:
        if self.channel.take_recorded(delivery_tag):
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        self.channel.retried(lambda: self._forget(delivery_tag))
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            self.channel.retried(lambda: self.restore_by_tag(delivery_tag, leftmost=True))
        else:
            self.channel.retried(lambda: self._forget(delivery_tag))
        virtual.QoS.ack(self, delivery_tag)

    def _forget(self, delivery_tag: str) -> None:
        if self.channel._reliable:
            self.channel.inflight_keys.ack(self.channel.scripts(), delivery_tag)
        else:
            self._remove_from_indices(delivery_tag).execute()


class ReliableFetch:
    """Mixed in before kombu's Redis ``Channel``; see the module docstring."""

    QoS = QoS
    # kombu's channel state and methods this mixin works with.
    connection: Any
    client: Any
    global_keyprefix: str
    unacked_key: str
    unacked_index_key: str
    health_check_interval: Any
    brpop_timeout: float
    priority_steps: list[int]
    sep: str
    active_queues: list[str]
    closed: bool
    _queue_cycle: Any
    _in_poll: Any
    _brpop_sent_at: Any
    _pool: Any
    _async_pool: Any
    _q_for_pri: Callable[[str, int], str]
    _flush_brpop_reauth: Callable[[], None]
    _maybe_update_queues_expire: Callable[[Any, str], None]
    conn_or_acquire: Callable[..., Any]
    scripts: Callable[[], redis.Redis]
    _accept: Callable[[str, bytes], dict[str, Any] | None]
    _deliver_popped: Callable[[Any], bool]
    _pop: Callable[[str], dict[str, Any]]
    Message: Any
    qos: Any
    connection_errors: tuple[type[BaseException], ...]

    #: Decided at the first fetch: None until then.
    _reliable: bool | None = None
    #: The in-flight list of the connection consumed on now, and the one of ``basic_get``.
    _inflight: InFlight | None = None
    _inflight_sock: Any = None
    _get_inflight: InFlight | None = None
    #: The command in flight on the consuming connection: (FETCH or WAIT, the key it blocks on).
    _pending: tuple[str, str] | None = None
    _wait_next = False
    _sleep_until = 0.0
    _kept_at = float("-inf")
    _recorded_tag: str | None = None
    _abandoned = False
    _no_ack_queues: frozenset[str] = frozenset()
    #: When the consuming connection last answered (monotonic); None before its first answer.
    answered_at: float | None = None

    @property
    def reliable(self) -> bool:
        """Whether this channel fetches reliably: decided once, at its first fetch."""
        if self._reliable is None:
            wanted = bool(self.connection.client.transport_options.get("reliable_fetch", True))
            self._reliable = wanted and supports_reliable_fetch(self.scripts())
            if wanted and not self._reliable:
                logger.warning(
                    "transport: reliable fetch needs Redis 7.0 or later; taking messages "
                    "with kombu's BRPOP, which loses one whenever a reply is lost"
                )
        return self._reliable

    @cached_property
    def inflight_keys(self) -> InFlightKeys:
        interval = self.health_check_interval or DEFAULT_HEALTH_CHECK_INTERVAL
        prefix = self.global_keyprefix
        return InFlightKeys(
            prefix,
            prefix + self.unacked_key,
            prefix + self.unacked_index_key,
            DEADLINE_INTERVALS * interval,
        )

    @property
    def wait_timeout(self) -> float:
        """Seconds a blocking wait lasts on the server (kombu's ``brpop_timeout`` for BRPOP)."""
        if not self._reliable:
            return float(self.brpop_timeout or 1)
        options = self.connection.client.transport_options
        return float(options.get("polling_interval") or WAIT_SECONDS)

    def retried(self, operation: Callable[[], T]) -> T:
        """``operation``, retried once on a fresh connection (see :func:`retried_once`).
        When the fresh connection fails too, the path is gone: the loss is declared."""
        try:
            return retried_once(self._drop_idle_connections, operation)
        except (redis.exceptions.TimeoutError, redis.exceptions.ConnectionError) as exc:
            cycle = getattr(self.connection, "cycle", None)
            if cycle is not None and hasattr(cycle, "declare_lost"):
                cycle.declare_lost(f"a command failed on a fresh connection ({type(exc).__name__})")
            raise

    def _drop_idle_connections(self) -> None:
        if self._pool is not None:
            self._pool.disconnect(inuse_connections=False)

    # Consuming -----------------------------------------------------------------------
    def _inflight_for(self, connection: Any) -> InFlight:
        """The in-flight list of the connection consuming now: a new one per connection,
        so a command that reaches the server late never mixes two queues' items."""
        if self._inflight is None or connection._sock is not self._inflight_sock:
            if self._inflight is not None:
                self._give_back(self._inflight)
            self._inflight = InFlight(self.inflight_keys)
            self._inflight_sock = connection._sock
        return self._inflight

    def _brpop_start(self, timeout: Any = None) -> None:
        if not self.reliable:
            self._pending = None
            super()._brpop_start(timeout)  # type: ignore[misc]
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = [self._prefixed(q, pri) for pri in self.priority_steps for q in queues]
        connection = self.client.connection
        inflight = self._inflight_for(connection)
        block_key = keys[0]
        if self._wait_next:
            sleep = monotonic() < self._sleep_until
            command = inflight.wait_command(block_key, timeout or self.wait_timeout, sleep)
            self._pending = (WAIT, block_key)
        else:
            command = inflight.fetch_command(keys, block_key)
            self._pending = (FETCH, block_key)
        self._in_poll = connection
        self._brpop_sent_at = monotonic()
        connection.send_command(*command)

    def _prefixed(self, queue: str, priority: int) -> str:
        return self.global_keyprefix + self._q_for_pri(queue, priority)

    def _brpop_read(self, **options: Any) -> bool:
        pending, self._pending = self._pending, None
        try:
            connection = self.client.connection
            command = "BRPOP" if pending is None else "EVALSHA"  # EVALSHA: no reply callback
            try:
                reply = self.client.parse_response(connection, command, **options)
            except self.connection_errors:
                # if there's a ConnectionError, disconnect so the next
                # iteration will reconnect automatically.
                connection.disconnect()
                raise
            except redis.exceptions.ResponseError as exc:
                if pending is None:
                    raise
                self.answered_at = monotonic()
                self._refused(pending[0], exc)
                raise Empty() from None
            self.answered_at = monotonic()
            if pending is None:
                return self._deliver_popped(reply)
            kind, block_key = pending
            if kind == FETCH:
                taken = InFlight.parse_fetch(reply)
            else:
                taken = InFlight.parse_wait(reply, block_key)
            if taken is None:
                self._wait_next = kind == FETCH
                raise Empty()
            self._wait_next = False
            return self._deliver_taken(taken)
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _refused(self, kind: str, exc: redis.exceptions.ResponseError) -> None:
        """The server refused the fetch or the wait; nothing moved."""
        inflight = self._inflight
        if isinstance(exc, redis.exceptions.NoScriptError) and inflight is not None:
            inflight.send_text = True  # after a restart or a failover
        elif kind == WAIT and isinstance(exc, redis.exceptions.OutOfMemoryError):
            self._sleep_until = monotonic() + OOM_SLEEP_SECONDS
            self._wait_next = True
        else:
            logger.error(
                "transport: the broker refused reliable fetch (%s: %s); taking messages "
                "with kombu's BRPOP from now on",
                type(exc).__name__,
                exc,
            )
            if inflight is not None:
                self._give_back(inflight)
            self._reliable = False

    def _deliver_taken(self, taken: Taken) -> bool:
        """Validate, record and deliver the item now in the in-flight list."""
        inflight = self._inflight
        assert inflight is not None
        queue = taken.source.removeprefix(self.global_keyprefix).rsplit(self.sep, 1)[0]
        self._queue_cycle.rotate(queue)
        payload = self._parsed(inflight, queue, taken.item)
        if payload is None:  # dead-lettered
            self.retried(lambda: inflight.release(self.scripts()))
            return True
        if not self._record(inflight, queue, payload):
            raise Empty()
        self.connection._deliver(payload, queue)
        return True

    def _parsed(self, inflight: InFlight, queue: str, item: bytes) -> dict[str, Any] | None:
        """The channel's ``_accept``. Without a poison policy it is kombu's own parse, which
        raises on garbage: the item is dropped then, as kombu's BRPOP would have lost it,
        instead of coming back from the in-flight list at every fetch."""
        try:
            return self._accept(queue, item)
        except Exception:
            self.retried(lambda: inflight.release(self.scripts()))
            raise

    def _record(self, inflight: InFlight, queue: str, payload: dict[str, Any]) -> bool:
        """Move the item from the in-flight list into kombu's unacked records (or just
        drop it, for a consumer that acknowledges nothing). False when a sweep put it
        back in its queue meanwhile: this copy is not delivered."""
        if queue in self._no_ack_queues:
            self.retried(lambda: inflight.release(self.scripts()))
            return True
        properties = payload["properties"]
        tag = properties["delivery_tag"]
        info = properties.get("delivery_info") or {}
        exchange, routing_key = str(info.get("exchange", "")), str(info.get("routing_key", ""))
        recorded = self.retried(
            lambda: inflight.record(self.scripts(), tag, exchange, routing_key, time())
        )
        if recorded:
            self._recorded_tag = tag
        else:
            logger.warning(
                "transport: a message taken from %s went back to its queue meanwhile "
                "(this consumer was silent past its deadline); not delivered here",
                queue,
            )
        return recorded

    def take_recorded(self, delivery_tag: str) -> bool:
        """Whether the channel recorded this delivery on the server already (asked once)."""
        if self._recorded_tag is not None and self._recorded_tag == delivery_tag:
            self._recorded_tag = None
            return True
        return False

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues = self._no_ack_queues | {queue}
        else:
            self._no_ack_queues = self._no_ack_queues - {queue}
        return super().basic_consume(queue, no_ack, *args, **kwargs)  # type: ignore[misc]

    # Without waiting -----------------------------------------------------------------
    def _get(self, queue: str, timeout: Any = None) -> dict[str, Any]:
        if not self.reliable:
            return self._pop(queue)
        return self._take(queue, no_ack=queue in self._no_ack_queues)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        if not self.reliable:
            return super().basic_get(queue, no_ack, **kwargs)  # type: ignore[misc]
        try:
            message = self.Message(self._take(queue, no_ack), channel=self)
        except Empty:
            return None
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def _take(self, queue: str, no_ack: bool) -> dict[str, Any]:
        if self._get_inflight is None:
            self._get_inflight = InFlight(self.inflight_keys)
        inflight = self._get_inflight
        taken = inflight.fetch(
            self.scripts(), [self._prefixed(queue, p) for p in self.priority_steps]
        )
        with self.conn_or_acquire() as client:
            self._maybe_update_queues_expire(client, queue)
        if taken is None:
            raise Empty()
        payload = self._parsed(inflight, queue, taken.item)
        if payload is None:  # dead-lettered
            self.retried(lambda: inflight.release(self.scripts()))
            raise Empty()
        if no_ack:
            self.retried(lambda: inflight.release(self.scripts()))
        elif not self._record(inflight, queue, payload):
            raise Empty()
        return payload

    # Upkeep --------------------------------------------------------------------------
    def keep_inflight(self, now: float) -> None:
        """Each health-check interval: move on this channel's deadline and sweep the
        in-flight lists of silent consumers back to their queues."""
        interval = self.health_check_interval or DEFAULT_HEALTH_CHECK_INTERVAL
        if not self._reliable or now - self._kept_at < interval or self.waiting_late(now):
            return
        self._kept_at = now
        alive = self._inflight.id if self._inflight is not None else ""
        restored = self.inflight_keys.sweep(self.scripts(), alive)
        if restored:
            logger.warning(
                "transport: put %d message(s) of silent consumers back in their queues", restored
            )

    def waiting_late(self, now: float) -> bool:
        """The consuming connection's reply is late: a sweep would likely block on the
        same dead path, and the silence check decides soon. Periodic, so it waits."""
        sent_at = self._brpop_sent_at
        return bool(self._in_poll) and sent_at is not None and now - sent_at > self.wait_timeout + 1

    def _give_back(self, inflight: InFlight) -> None:
        """Best effort, on a fresh connection: what fails here, a sweep does later."""
        try:
            self._drop_idle_connections()
            inflight.give_back(self.scripts())
        except (redis.exceptions.RedisError, OSError) as exc:
            logger.debug("transport: in-flight list left for a sweep (%s)", type(exc).__name__)

    def overdue(self, now: float) -> float | None:
        """Seconds the consuming connection has waited for a reply, once past
        the wait plus ``health_check_interval`` (kombu's rule for BRPOP); else None."""
        connection = self._in_poll
        sent_at = self._brpop_sent_at
        if not connection or sent_at is None or not self.health_check_interval:
            return None
        answered = self.answered_at
        if answered is not None and answered >= sent_at:
            return None  # answered: the reply is being delivered, maybe slowly
        waited: float = now - sent_at
        if waited < self.wait_timeout + self.health_check_interval:
            return None
        sock = getattr(connection, "_sock", None)
        if sock is None or _socket_readable(sock):
            return None
        return waited

    def abandon(self) -> None:
        """The path is gone (see the poller): drop every connection, and check that
        the broker answers before any later command (:meth:`_check_reachable`)."""
        self._abandoned = True
        self.drop_connections()

    def drop_connections(self) -> None:
        for pool in (self._pool, self._async_pool):
            if pool is not None:
                with contextlib.suppress(Exception):
                    pool.disconnect()

    def close(self) -> None:
        if not self.closed and self._reliable:
            if self._in_poll:
                # What the pending command moved is in the in-flight list: no reply to read.
                connection, self._in_poll = self._in_poll, None
                with contextlib.suppress(Exception):
                    connection.disconnect()
            for inflight in (self._inflight, self._get_inflight):
                if inflight is not None:
                    self._give_back(inflight)
            self._inflight = self._get_inflight = None
        super().close()  # type: ignore[misc]
