"""Keeping a reliable channel's in-flight items and noticing that its path is gone.

``Upkeep`` is the base of :class:`~telemetry.transport.reliable.ReliableFetch`,
mixed into our kombu Redis channel:

* each health-check interval the channel moves on its deadline and sweeps the
  in-flight lists of silent consumers back to their queues (:meth:`keep_inflight`,
  which ``telemetry.transport.poller`` calls); ``close`` gives its own back;
* :meth:`overdue` tells a consuming connection whose reply is late, kombu's rule
  for a stale BRPOP; the poller then has every channel :meth:`abandon` its
  connections, and an abandoned channel asks once whether the broker answers
  before any further command (the channel's ``_check_reachable``);
* acks, rejects and records are idempotent: :meth:`retried` runs them again once
  on a fresh connection when they time out, and declares the loss when that
  fails too. The :class:`QoS` acks with one script, which a full broker runs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar

import redis
from kombu.transport import virtual
from kombu.transport.redis import DEFAULT_HEALTH_CHECK_INTERVAL, _socket_readable
from kombu.transport.redis import QoS as KombuQoS

from telemetry.transport.fetch import DEADLINE_INTERVALS, InFlight, InFlightKeys, retried_once

logger = logging.getLogger("telemetry.transport")

#: How long a reliable consumer blocks on its head queue before it looks at every
#: key again, unless the app set kombu's ``polling_interval``. ``BLMOVE`` watches
#: one key: a message on another waits at most this long when the worker is idle.
WAIT_SECONDS = 0.25

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


class Upkeep:
    """The in-flight lists' upkeep and the channel's connection-loss rules; see the module."""

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
