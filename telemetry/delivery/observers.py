"""Who hears of a delivery's life in a worker's main process, and the outcome vocabulary.

    class Mine(DeliveryObserver):          # override only what matters to you
        def on_finished(self, request, outcome, exception): ...

    OBSERVERS.add(Mine())
    OBSERVERS.finished(request, SUCCEEDED, None)   # what telemetry.delivery.request calls

The request mixin (``telemetry.delivery.request``) announces every delivery;
a dead-letter writer announces what it moves aside with :meth:`Observers.dead_lettered`.
Dispatch isolates observers, as Dramatiq's ``emit_after`` does: one that raises
is logged (once a minute at most) and the others still hear of the event. With
no observer registered (``TELEMETRY_ENABLED=false``) the cost is one empty loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from telemetry.log_throttle import LogThrottle

logger = logging.getLogger("telemetry.delivery")

SUCCEEDED, FAILED, RETRIED, REQUEUED, REJECTED, REVOKED = (
    "succeeded",
    "failed",
    "retried",
    "requeued",
    "rejected",
    "revoked",
)
#: Every delivery ends in exactly one of these; ``rejected`` is refused before
#: execution and dead-lettered.
OUTCOMES = (SUCCEEDED, FAILED, RETRIED, REQUEUED, REJECTED, REVOKED)


class DeliveryObserver:
    """Hears of deliveries in the main process; every method does nothing unless overridden."""

    def on_received(self, request: Any) -> None:
        """A delivery became a Request: the worker took it from the broker."""

    def on_started(self, request: Any) -> None:
        """The pool accepted the request; it is executing."""

    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        """The delivery ended; called exactly once per request."""

    def on_dead_lettered(self, queue: str, task: str | None, reason: str, refused: bool) -> None:
        """A message was dead-lettered.

        ``refused`` is true when no Request ever existed for it (the transport
        and consumer paths): that delivery ends here, as ``rejected``.
        """


class Observers:
    """The registered observers, called in turn; one observer's failure never stops the rest."""

    def __init__(self) -> None:
        self._observers: list[DeliveryObserver] = []
        self._log = LogThrottle()

    def __contains__(self, observer: object) -> bool:
        return observer in self._observers

    def __iter__(self) -> Iterator[DeliveryObserver]:
        return iter(list(self._observers))

    def add(self, observer: DeliveryObserver) -> None:
        if observer not in self._observers:
            self._observers.append(observer)

    def remove(self, observer: DeliveryObserver) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def clear(self) -> None:
        self._observers.clear()

    def received(self, request: Any) -> None:
        self._each("on_received", request)

    def started(self, request: Any) -> None:
        self._each("on_started", request)

    def finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        self._each("on_finished", request, outcome, exception)

    def dead_lettered(self, queue: str, task: str | None, reason: str, refused: bool) -> None:
        self._each("on_dead_lettered", queue, task, reason, refused)

    def _each(self, method: str, *args: Any) -> None:
        for observer in self._observers:
            try:
                getattr(observer, method)(*args)
            except Exception as exc:
                self._failed(observer, exc)

    def _failed(self, observer: DeliveryObserver, exc: Exception) -> None:
        if self._log.due():
            logger.warning(
                "delivery observer %s failed: %s: %s",
                type(observer).__name__,
                type(exc).__name__,
                exc,
            )


#: The process's observers: one worker runs in a main process.
OBSERVERS = Observers()
