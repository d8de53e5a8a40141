"""What the consumer's own connection says: the ``consumer`` check, and /livez in a reconnect.

* :class:`ConsumerCheck` (``consumer`` in ``/readyz``) fails while the consumer
  waits for a reply past the wait plus ``BROKER_HEALTH_CHECK_INTERVAL`` (kombu's
  rule for a stale BRPOP, read from its channel), and while Celery reconnects
  it. The ``broker`` check's PING goes over a fresh connection and can succeed
  while only the consumer's is dead. It also logs, at most once a minute, the
  broker and how long since its last answer.
* :class:`ReconnectTicks` keeps ``/livez`` 200 while the consumer is in Celery's
  reconnect loop, which calls its callback every second between attempts: the
  loop is not turning, yet the worker does what it should. A command blocked
  on a socket inside the event loop ticks nothing, and ``/livez`` says 503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from telemetry.log_throttle import LogThrottle
from telemetry.readiness.checks import CheckResult

logger = logging.getLogger("telemetry.readiness")


def silence(channel: Any, now: float) -> float | None:
    """Seconds the channel's consuming connection has waited past its limit, or None.

    Ours says it (``overdue``); on kombu's own channel, kombu's rule is read from
    its state: a BRPOP sent ``brpop_timeout + health_check_interval`` ago, unanswered.
    """
    overdue = getattr(channel, "overdue", None)
    if overdue is not None:
        waited: float | None = overdue(now)
        return waited
    sent_at = getattr(channel, "_brpop_sent_at", None)
    interval = getattr(channel, "health_check_interval", 0) or 0
    if not getattr(channel, "_in_poll", None) or sent_at is None or not interval:
        return None
    waited = now - sent_at
    return waited if waited >= (channel.brpop_timeout or 0) + interval else None


class ConsumerCheck:
    """Up while the consumer's connection answers; see the module docstring."""

    name = "consumer"

    def __init__(
        self,
        consumer: Callable[[], Any],
        broker: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``consumer``: Celery's consumer, once the worker has one (None before)."""
        self.consumer = consumer
        self.broker = broker
        self.clock = clock
        self._last_answer = clock()
        self._log = LogThrottle()

    def _channel(self) -> Any:
        consumer = self.consumer()
        if getattr(consumer, "connection", None) is None:
            return None  # in Celery's reconnect loop
        channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
        return None if channel is None or getattr(channel, "closed", False) else channel

    def run(self, timeout: float) -> CheckResult:
        now = self.clock()
        channel = self._channel()
        if channel is None:
            return self._down(now, "Reconnecting")
        waited = silence(channel, now)
        if waited is not None:
            return self._down(now, "NoReply")
        answered = getattr(channel, "answered_at", None)
        self._last_answer = answered if answered is not None else now
        return CheckResult(True, 0.0)

    def _down(self, now: float, error: str) -> CheckResult:
        age = now - self._last_answer
        if self._log.due():
            logger.warning(
                "consumer: no answer from the broker %s for %.0f s (%s)",
                self.broker,
                age,
                "reconnecting" if error == "Reconnecting" else "no reply to its fetch",
            )
        return CheckResult(False, 0.0, error)


class ReconnectTicks:
    """Ticks ``tick`` along Celery's reconnect path.

    ``ready`` wraps two of the consumer's methods: ``on_connection_error_after_connected``
    (the loss is handled: a tick as it starts) and ``ensure_connected`` (each connection
    it ensures gets a callback that ticks, then calls Celery's own). ``stop`` unwraps.
    """

    def __init__(self, tick: Callable[[], None]) -> None:
        self.tick = tick
        self._consumer: Any = None

    def ready(self, consumer: Any) -> None:
        original = getattr(consumer, "ensure_connected", None)
        on_loss = getattr(consumer, "on_connection_error_after_connected", None)
        if not (callable(original) and callable(on_loss)):
            return  # not Celery's consumer: no reconnect path to follow
        tick = self.tick

        def on_connection_error_after_connected(exc: Any) -> Any:
            tick()  # the reconnect path starts here: closing, cancelling, then the retries
            return on_loss(exc)

        def ensure_connected(conn: Any) -> Any:
            ensure = conn.ensure_connection

            def ensure_connection(*args: Any, callback: Any = None, **kwargs: Any) -> Any:
                def ticking() -> None:
                    tick()
                    if callback is not None:
                        callback()

                return ensure(*args, callback=ticking, **kwargs)

            conn.ensure_connection = ensure_connection
            tick()
            return original(conn)

        consumer.ensure_connected = ensure_connected
        consumer.on_connection_error_after_connected = on_connection_error_after_connected
        self._consumer = consumer

    def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.__dict__.pop("ensure_connected", None)
            consumer.__dict__.pop("on_connection_error_after_connected", None)
