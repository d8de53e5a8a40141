"""Where a delivery's life is announced in the worker's main process.

The worker's ``Request`` (``worker.request``) and dead-letter writer call every
registered :class:`DeliveryObserver`; telemetry registers one. With none
registered (``TELEMETRY_ENABLED=false``) the cost is one empty loop.

Outcomes: ``succeeded``, ``failed``, ``retried``, ``requeued``, ``rejected``
(refused before execution and dead-lettered), ``revoked``.
"""

from __future__ import annotations

from typing import Any, Protocol

SUCCEEDED, FAILED, RETRIED, REQUEUED, REJECTED, REVOKED = (
    "succeeded",
    "failed",
    "retried",
    "requeued",
    "rejected",
    "revoked",
)


class DeliveryObserver(Protocol):
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


observers: list[DeliveryObserver] = []


def add_observer(observer: DeliveryObserver) -> None:
    if observer not in observers:
        observers.append(observer)


def remove_observer(observer: DeliveryObserver) -> None:
    if observer in observers:
        observers.remove(observer)
