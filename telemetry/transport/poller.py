"""kombu's channel poller, with a silent consuming connection treated as a lost connection.

kombu 5.7 drops a BRPOP connection whose reply is overdue by ``brpop_timeout +
health_check_interval`` and quietly opens another on the next poll. The
consumer never learns that the path to the broker went away: its other
connections (the pool that records, acks and publishes, the pub/sub one) may be
just as dead, and the running late-ack tasks are not cancelled as Celery does
on a connection loss. Here the overdue check runs every
:data:`SILENCE_CHECK_SECONDS`, closes every connection of the silent channel and
raises :class:`BrokerSilent`, one of the transport's connection errors: the
event loop propagates it and Celery's consumer takes its connection-loss path
(cancel per ``worker_cancel_long_running_tasks_on_connection_loss``, close,
reconnect). Without an event loop (``drain_events``) kombu runs the same check
after a poll that saw nothing, and the caller gets the error. Two unanswered
health-check PINGs on a pub/sub connection, or one that cannot be sent (kombu
drops and reopens the connection either way), are the same loss: while the pool
is full no fetch is pending, and the worker's control connection still asks.

The poller also keeps the channels' in-flight lists (``telemetry.transport.fetch``):
each health-check interval a channel moves on its own deadline and sweeps the
lists of silent ones back to their queues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import monotonic
from typing import Any

import redis
from kombu.transport.redis import SUBCLIENT_MAX_MISSED_HEALTH_CHECKS, MultiChannelPoller

from telemetry.log_throttle import LogThrottle

logger = logging.getLogger("telemetry.transport")

#: How often the event loop looks for a silent consuming connection (no I/O).
SILENCE_CHECK_SECONDS = 1.0


class BrokerSilent(redis.exceptions.ConnectionError):
    """The consuming connection got no reply in time: the path to the broker is gone."""


class Poller(MultiChannelPoller):
    def __init__(self) -> None:
        super().__init__()
        self._refusals = LogThrottle()
        #: A loss to raise at the next check, found outside it.
        self.pending: str | None = None
        self._reachable: bool | None = None

    def maybe_check_brpop_health(self) -> None:
        if self.pending is not None:
            why, self.pending = self.pending, None
            raise BrokerSilent(f"{why}; reconnecting")
        now = monotonic()
        for channel in self._channels:
            waited = channel.overdue(now)
            if waited is None:
                continue
            limit = channel.wait_timeout + channel.health_check_interval
            self._lost(
                channel,
                f"no reply from the broker for {waited:.0f} s (limit: {limit:g} s, "
                "the wait plus health_check_interval)",
            )

    def maybe_check_subclient_health(self) -> None:
        """kombu's PING on each pub/sub connection every health-check interval. Two
        unanswered, or one that cannot be sent (keepalive ended the connection), mean
        the path is gone, as for the consuming connection: while the pool is full no
        fetch is pending, and the worker's control connection is the one still asking."""
        for channel in list(self._channels):
            client = channel.__dict__.get("subclient")  # only if kombu made one
            if client is None or client.connection is None:
                continue
            missed = getattr(client, "health_check_response_counter", 0)
            if isinstance(missed, int) and missed >= SUBCLIENT_MAX_MISSED_HEALTH_CHECKS:
                client.health_check_response_counter = 0
                self._lost(channel, f"no reply to {missed} health checks of a pub/sub connection")
            try:
                client.check_health()
            except channel.connection_errors as exc:
                self._lost(channel, f"a pub/sub health check failed ({type(exc).__name__})")

    def _lost(self, channel: Any, why: str) -> None:
        self.abandon()
        raise BrokerSilent(f"{why}; reconnecting")

    def abandon(self, reachable: bool | None = None) -> None:
        """The path to the broker is gone: every channel so far drops its connections
        and, until it is closed, asks :meth:`reachable` before any command, so closing
        costs one connect timeout at most, not one per restore, binding or give-back.
        Channels opened afterwards (a reconnect) are not affected."""
        self._reachable = reachable
        for channel in list(self._channels):
            channel.abandon()

    def declare_lost(self, why: str) -> None:
        """A command failed on a fresh connection too: the loss is raised at the next
        check (within :data:`SILENCE_CHECK_SECONDS`), and commands fail fast until then."""
        self.abandon(reachable=False)
        self.pending = why

    def reachable(self, probe: Callable[[], bool]) -> bool:
        """Whether the broker answers a new connection, asked once per loss (``probe``)."""
        if self._reachable is None:
            self._reachable = probe()
        return self._reachable

    def maybe_keep_inflight(self) -> None:
        now = monotonic()
        for channel in list(self._channels):
            try:
                channel.keep_inflight(now)
            except channel.connection_errors:
                logger.debug("keep_inflight: connection error, will retry", exc_info=True)
                return

    def maybe_restore_messages(self) -> Any:
        # Without an event loop, kombu calls this after each poll that saw nothing.
        self.maybe_keep_inflight()
        now = monotonic()
        if any(channel.waiting_late(now) for channel in list(self._channels)):
            # The consuming reply is late: the restore would likely block on the same
            # dead path, one socket timeout per pooled connection, before the silence
            # check can run. It is periodic, so it waits.
            return None
        try:
            return super().maybe_restore_messages()
        except redis.exceptions.ResponseError as exc:
            # kombu's restore takes a lock (SET), which a full broker (maxmemory,
            # noeviction) refuses: consuming must go on, the restore waits.
            if self._refusals.due():
                logger.warning("unacked restore refused by the broker: %s", exc)
            return None
