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
after a poll that saw nothing, and the caller gets the error.

The poller also keeps the channels' in-flight lists (``telemetry.transport.fetch``):
each health-check interval a channel moves on its own deadline and sweeps the
lists of silent ones back to their queues.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any

import redis
from kombu.transport.redis import MultiChannelPoller

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

    def maybe_check_brpop_health(self) -> None:
        now = monotonic()
        for channel in self._channels:
            waited = channel.overdue(now)
            if waited is None:
                continue
            channel.drop_connections()
            raise BrokerSilent(
                f"no reply from the broker for {waited:.0f} s "
                f"(limit: {channel.wait_timeout + channel.health_check_interval:g} s, "
                "the wait plus health_check_interval); reconnecting"
            )

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
        try:
            return super().maybe_restore_messages()
        except redis.exceptions.ResponseError as exc:
            # kombu's restore takes a lock (SET), which a full broker (maxmemory,
            # noeviction) refuses: consuming must go on, the restore waits.
            if self._refusals.due():
                logger.warning("unacked restore refused by the broker: %s", exc)
            return None
