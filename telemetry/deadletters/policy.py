"""What poison safety judges by, as one value: the app's accepted content and the limits.

    policy = PoisonPolicy.of(app.conf.accept_content, settings)   # at worker start
    Connection(url, transport_options={POLICY_OPTION: policy})   # what the consumer does

The validating channel (``telemetry.transport.channel``) only sees its kombu
``Connection``, never the app, so the worker's consumer hands the policy to
the connection it consumes from, as the transport option :data:`POLICY_OPTION`.
A connection without one (a producer's, another app's, plain kombu) is left
as kombu's own channel would leave it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kombu.exceptions import SerializerNotInstalled
from kombu.serialization import prepare_accept_content

from telemetry.deadletters.validation import JSON_ONLY
from telemetry.settings import ConfigError, TelemetrySettings

#: The transport option that carries the policy from the consumer to its channel.
POLICY_OPTION = "telemetry_poison_policy"


@dataclass(frozen=True)
class PoisonPolicy:
    """``accept`` holds content types (None: any, as Celery's ``accept_content=None``)."""

    accept: frozenset[str] | None
    max_message_bytes: int
    deadletter_max: int
    deadletter_max_bytes: int
    #: Seconds a dead letter is kept (``DEADLETTER_TTL``); None: until a cap trims it.
    deadletter_ttl: float | None = None

    @classmethod
    def of(cls, accept_content: Iterable[str] | None, settings: TelemetrySettings) -> PoisonPolicy:
        """The policy for an app's ``accept_content`` (names or content types) and the settings.

        Raises:
            ConfigError: ``accept_content`` names a serializer kombu has not installed.
        """
        try:
            accept = prepare_accept_content(accept_content)  # type: ignore[no-untyped-call]
        except SerializerNotInstalled as exc:
            raise ConfigError("accept_content", str(exc)) from None
        return cls(
            accept=None if accept is None else frozenset(accept),
            max_message_bytes=settings.max_message_bytes,
            deadletter_max=settings.deadletter_max,
            deadletter_max_bytes=settings.deadletter_max_bytes,
            deadletter_ttl=settings.deadletter_ttl,
        )


def _default(name: str) -> int:
    default: int = TelemetrySettings.model_fields[name].default
    return default


#: Celery's default ``accept_content`` and the settings' default limits: for tools that
#: read the list without a worker's settings (``DeadLetterWriter.for_app(app)``).
DEFAULT_POLICY = PoisonPolicy(
    accept=JSON_ONLY,
    max_message_bytes=_default("max_message_bytes"),
    deadletter_max=_default("deadletter_max"),
    deadletter_max_bytes=_default("deadletter_max_bytes"),
)
