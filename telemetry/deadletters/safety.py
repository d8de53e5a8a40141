"""Poison safety for any Celery app: what its worker cannot run is dead-lettered, not fatal.

    safety = PoisonSafety()
    safety.install(app)              # telemetry.install(app) does it (poison_safety=True)
    safety.start(worker, settings)   # worker_init: before the consumer and the pool exist
    safety.stop()                    # worker_shutdown
    safety.uninstall(app)            # telemetry.uninstall(app)

``install`` registers the validating transport (``telemetry.transport``) for
the whole process, held for this app; kombu's own entries come back when the
last app holding it is uninstalled. ``start`` makes the app's worker poison-safe:

* the policy: the app's ``accept_content`` and the limits of the settings;
* the consumer: ours (``telemetry.deadletters.consumer``) combined with the
  app's ``worker_consumer``, which hands the policy to the connection it
  consumes from. An app consumer that is not a subclass of Celery's, or that
  overrides a handler ours replaces, cannot be combined: ``start`` raises
  :class:`~telemetry.settings.ConfigError` (one ``settings: worker_consumer:``
  line at worker start);
* each task's Request: the dead-letter mixin (``telemetry.deadletters.request``)
  combined with the task's own Request class.

``uninstall`` puts back each task's own Request class, where ours is still set.
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


class PoisonSafety:
    """One app's poison safety; see the module docstring for what each step changes."""

    def __init__(self) -> None:
        self.writer: DeadLetterWriter | None = None
        #: Task name -> (its own Request, in its __dict__ or not; the class we set).
        self._requests: dict[str, tuple[Any, bool, type]] = {}

    def install(self, app: Celery) -> None:
        transport.register(app)

    def uninstall(self, app: Celery) -> None:
        for name, (original, own, ours) in self._requests.items():
            task = app.tasks.get(name)
            if task is None or task.Request is not ours:
                continue  # gone, or replaced since: whoever replaced it restores it
            if own:
                task.Request = original
            else:
                del task.Request
        self._requests.clear()
        transport.unregister(app)

    def start(self, worker: Any, settings: TelemetrySettings) -> None:
        """Make ``worker`` (a ``WorkController`` at ``worker_init``) poison-safe.

        Raises:
            ConfigError: the app's ``accept_content`` or ``worker_consumer`` is unusable.
        """
        app: Celery = worker.app
        policy = PoisonPolicy.of(app.conf.accept_content, settings)
        writer = self.writer = DeadLetterWriter.for_app(app, policy)
        worker.consumer_cls = combined_consumer(worker.consumer_cls, policy, writer)
        for name, task in app.tasks.items():
            own = "Request" in vars(task)
            original = task.Request
            ours = with_dead_letters(
                symbol_by_name(original), writer, settings.worker_lost_retry_delay
            )
            task.Request = ours
            if name in self._requests:  # a second start: the first one saw the app's own
                original, own, _ = self._requests[name]
            self._requests[name] = (original, own, ours)

    def stop(self) -> None:
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
