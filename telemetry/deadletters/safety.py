"""Poison safety for any Celery app: what its worker cannot run is dead-lettered, not fatal.

    transport = PoisonTransport()       # an app concern (telemetry.wiring.concern)
    transport.install(app)              # telemetry.install(app) does it (poison_safety=True)
    safety = PoisonSafety(settings)     # a worker concern, built at worker_init
    safety.start(worker)                # before the consumer and the pool exist
    safety.stop()                       # worker_shutdown
    transport.uninstall(app)            # telemetry.uninstall(app)

``PoisonTransport.install`` registers the validating transport
(``telemetry.transport``) for the whole process, held for this app; kombu's own
entries come back when the last app holding it is uninstalled.
``PoisonSafety.start`` makes the app's worker poison-safe, even with
``TELEMETRY_ENABLED=false``:

* the policy: the app's ``accept_content`` and the limits of the settings;
* the consumer: ours (``telemetry.deadletters.consumer``) combined with the
  app's ``worker_consumer``, which hands the policy to the connection it
  consumes from. An app consumer that is not a subclass of Celery's, or that
  overrides a handler ours replaces, cannot be combined: ``start`` exits with
  one ``settings: worker_consumer:`` line;
* each task's Request: the dead-letter mixin (``telemetry.deadletters.request``)
  combined with the task's own Request class.

``stop`` stores the dead letters still held in memory, and puts back each
task's own Request class, where ours is still set.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.utils.imports import symbol_by_name
from celery.worker.consumer import Consumer

from telemetry import transport
from telemetry.deadletters.consumer import REPLACED_HANDLERS, DeadLetteringConsumer
from telemetry.deadletters.policy import PoisonPolicy
from telemetry.deadletters.request import with_dead_letters
from telemetry.deadletters.writer import DeadLetterWriter
from telemetry.settings import ConfigError, TelemetrySettings
from telemetry.wiring.concern import Concern

logger = logging.getLogger("telemetry.deadletters")

_CELERY_CONSUMER = "celery.worker.consumer.Consumer"


def combined_consumer(
    configured: Any, policy: PoisonPolicy, writer: DeadLetterWriter
) -> type[DeadLetteringConsumer]:
    """Our consumer on top of ``configured`` (the app's ``worker_consumer``, a class or a path).

    Raises:
        ConfigError: ``configured`` cannot be imported, is not a subclass of
            Celery's consumer, or overrides a handler ours replaces.
    """
    name = configured if isinstance(configured, str) else getattr(configured, "__name__", "?")
    try:
        theirs = symbol_by_name(configured)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError("worker_consumer", f"{name} cannot be imported ({exc})") from None
    if not (isinstance(theirs, type) and issubclass(theirs, Consumer)):
        raise ConfigError(
            "worker_consumer",
            f"{name} is not a subclass of {_CELERY_CONSUMER}, which poison safety extends; "
            "derive it from that class, or install the telemetry with poison_safety=False",
        )
    if issubclass(theirs, DeadLetteringConsumer):
        bases: tuple[type, ...] = (theirs,)
    else:
        replaced = [h for h in REPLACED_HANDLERS if getattr(theirs, h) is not getattr(Consumer, h)]
        if replaced:
            raise ConfigError(
                "worker_consumer",
                f"{name} overrides {', '.join(replaced)}, which poison safety replaces "
                "to dead-letter those messages; drop the override, or install the "
                "telemetry with poison_safety=False",
            )
        bases = (DeadLetteringConsumer, theirs)
    attributes = {"poison_policy": policy, "dead_letters": writer}
    combined: type[DeadLetteringConsumer] = type(theirs.__name__, bases, attributes)
    return combined


class PoisonTransport(Concern):
    """One app's hold on the validating transport, registered for the whole process."""

    def install(self, app: Celery) -> None:
        transport.register(app)

    def uninstall(self, app: Celery) -> None:
        transport.unregister(app)


class PoisonSafety(Concern):
    """One worker's poison safety; see the module docstring for what each step changes."""

    def __init__(self, settings: TelemetrySettings) -> None:
        self.settings = settings
        self.app: Celery | None = None
        self.writer: DeadLetterWriter | None = None
        #: Task name -> (its own Request, in its __dict__ or not; the class we set).
        self._requests: dict[str, tuple[Any, bool, type]] = {}

    def start(self, worker: Any) -> None:
        """Make ``worker`` (a ``WorkController`` at ``worker_init``) poison-safe.

        Raises:
            SystemExit: one ``settings:`` line when the app's ``accept_content`` or
            ``worker_consumer`` is unusable.
        """
        try:
            self.protect(worker)
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None

    def protect(self, worker: Any) -> None:
        """:meth:`start`, raising :class:`~telemetry.settings.ConfigError` instead."""
        app: Celery = worker.app
        settings = self.settings
        policy = PoisonPolicy.of(app.conf.accept_content, settings)
        writer = self.writer = DeadLetterWriter.for_app(app, policy)
        worker.consumer_cls = combined_consumer(worker.consumer_cls, policy, writer)
        self.app = app
        for name, task in app.tasks.items():
            own = "Request" in vars(task)
            original = task.Request
            ours = with_dead_letters(
                symbol_by_name(original), writer, settings.worker_lost_retry_delay
            )
            task.Request = ours
            self._requests[name] = (original, own, ours)

    def stop(self) -> None:
        self._flush()
        self._restore()

    def _flush(self) -> None:
        """Store the dead letters still held in memory (the broker refused them), if it can."""
        writer = self.writer
        if writer is None:
            return
        writer.flush()
        if writer.held:
            logger.error(
                "%d dead letter(s) held in memory could not be stored before shutdown",
                writer.held,
            )

    def _restore(self) -> None:
        app = self.app
        for name, (original, own, ours) in self._requests.items():
            task = app.tasks.get(name) if app is not None else None
            if task is None or task.Request is not ours:
                continue  # gone, or replaced since: whoever replaced it restores it
            if own:
                task.Request = original
            else:
                del task.Request
        self._requests.clear()
