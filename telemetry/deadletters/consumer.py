"""Celery's consumer with its unknown, invalid and decode-error paths dead-lettering.

Celery's own handlers log the message body (``dump_body``) and then drop the
message. These log one bodiless line, store the envelope kombu kept and then
reject, still sending ``task_rejected``/``task_unknown`` so that telemetry sees
every delivery end.

The consumer also hands its :class:`~telemetry.deadletters.policy.PoisonPolicy`
to the connection it consumes from (``connection_for_read``), so that the
validating channel judges what it pops by the app's own ``accept_content``.
``telemetry.deadletters.safety`` combines it with the app's own
``worker_consumer``, setting :attr:`poison_policy` and :attr:`dead_letters`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from celery.exceptions import NotRegistered
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed
from vine import promise

from telemetry.deadletters.policy import DEFAULT_POLICY, POLICY_OPTION, PoisonPolicy
from telemetry.deadletters.records import Reason
from telemetry.deadletters.request import Undeliverable
from telemetry.deadletters.writer import DeadLetterWriter

logger = logging.getLogger("telemetry.deadletters")


#: The handlers this consumer replaces; an app's consumer that overrides one cannot be combined.
REPLACED_HANDLERS = ("on_unknown_message", "on_unknown_task", "on_invalid_task", "on_decode_error")


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    #: What the channel judges by; set on the class combined for a worker.
    poison_policy: PoisonPolicy = DEFAULT_POLICY
    #: The worker's writer, shared with its Requests; built here when unset.
    dead_letters: DeadLetterWriter | None = None

    @property
    def deadletters(self) -> DeadLetterWriter:
        if self.dead_letters is None:
            self.dead_letters = DeadLetterWriter.for_app(self.app, self.poison_policy)
        return self.dead_letters

    def connection_for_read(self, heartbeat: Any = None) -> Any:
        """The app's connection, carrying the policy for its channels (and for the
        same connection switched to the next URL of a failover list)."""
        connection = super().connection_for_read(heartbeat)
        connection.transport_options = {
            **(connection.transport_options or {}),
            POLICY_OPTION: self.poison_policy,
        }
        return connection

    def _dead_letter(self, message: Any, reason: Reason) -> None:
        self.deadletters.write_message(message, reason)
        message.reject_log_error(logger, self.connection_errors)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        reason = Reason.MISSING_HEADER if isinstance(message.headers, dict) else Reason.BAD_ENVELOPE
        self._dead_letter(message, reason)
        signals.task_rejected.send(sender=self, message=message, exc=None)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._dead_letter(message, Reason.UNKNOWN_TASK)
        headers = message.headers
        task_id, name = headers.get("id"), headers.get("task")
        try:
            # A caller waiting on the result learns why it never came.
            self.app.backend.mark_as_failure(task_id, NotRegistered(name), request=None)
        except Exception as backend_exc:
            logger.warning(
                "could not record NotRegistered for %s: %s", task_id, type(backend_exc).__name__
            )
        signals.task_unknown.send(sender=self, message=message, exc=exc, name=name, id=task_id)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        if isinstance(exc, Undeliverable):
            reason = exc.reason
        elif isinstance(exc, ContentDisallowed):
            reason = Reason.CONTENT_TYPE
        else:
            reason = Reason.BAD_ENVELOPE
        self._dead_letter(message, reason)
        signals.task_rejected.send(sender=self, message=message, exc=exc)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._dead_letter(message, Reason.BAD_BODY)
        signals.task_rejected.send(sender=self, message=message, exc=exc)

    def create_task_handler(self, promise: Any = promise) -> Any:
        """Celery's handler, with a last guard: no message may stop the consumer."""
        handle = super().create_task_handler(promise)
        fatal = (*self.connection_errors, *self.channel_errors)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except fatal:
                raise
            except Exception as exc:
                logger.error("message the worker could not accept: %s", type(exc).__name__)
                self._dead_letter(message, Reason.BAD_ENVELOPE)
                signals.task_rejected.send(sender=self, message=message, exc=exc)
                return None

        return on_task_received
