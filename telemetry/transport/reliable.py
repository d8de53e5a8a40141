"""The consuming side of reliable fetch, mixed into our kombu Redis channel.

``ReliableFetch`` replaces the channel's ``BRPOP`` with the in-flight list of
``telemetry.transport.fetch``: ``_brpop_start`` sends :data:`~scripts.FETCH` (or,
after one that found nothing, the blocking ``BLMOVE``), ``_brpop_read`` reads
the reply, validates the item, records it as unacked and delivers it, and the
QoS skips kombu's own record for it. ``basic_get`` takes the same way, without
waiting. Keeping the lists, the acks, and what the channel does when its path
to the broker is gone are its base's (``telemetry.transport.upkeep``).

With the transport option ``reliable_fetch: False``, or on a server older than
Redis 7.0, every method takes kombu's path (the channel's ``_deliver_popped``
and ``_pop``, which validate what kombu pops).
"""

from __future__ import annotations

import logging
from queue import Empty
from time import monotonic, time
from typing import Any, TypeVar

import redis

from telemetry.transport.fetch import (
    InFlight,
    Taken,
    supports_reliable_fetch,
)
from telemetry.transport.upkeep import Upkeep

logger = logging.getLogger("telemetry.transport")

#: After the server refused the blocking move for lack of memory, sleep instead of
#: moving for this long (``maxmemory`` with ``noeviction``).
OOM_SLEEP_SECONDS = 60.0
FETCH, WAIT = "fetch", "wait"

T = TypeVar("T")


class ReliableFetch(Upkeep):
    """Mixed in before kombu's Redis ``Channel``; see the module docstring."""

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
