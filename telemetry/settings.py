"""The telemetry's own configuration: one frozen object, read from the environment once.

    settings = read_settings(TelemetrySettings)    # ConfigError on a bad value
    settings.metrics_port                          # METRICS_PORT

``telemetry.install(app)`` reads nothing when called: the settings are read at
the app's first worker start or first publish. A bad value is exactly one line,
``settings: <VAR>: <problem>``; the value itself is never echoed, because it
may hold a credential. An app with settings of its own composes these by
subclassing :class:`TelemetrySettings` (the jobpilot worker's ``Settings`` does),
so one environment read validates both and every variable keeps its name.

The OpenTelemetry SDK is configured only with the standard ``OTEL_*`` variables
(``telemetry.tracing.providers``).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The readiness checks ``READINESS_REQUIRED`` may name.
READINESS_CHECKS = ("broker", "consumer", "database", "health_task")

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
#: Linux's ranges for TCP_KEEPIDLE and TCP_KEEPINTVL (seconds) and TCP_KEEPCNT (probes).
KeepaliveSeconds = Annotated[int, Field(ge=1, le=32767)]
KeepaliveProbes = Annotated[int, Field(ge=1, le=127)]
#: The shortest OPS_TOKEN accepted: a guessable token is no access control.
MIN_OPS_TOKEN_LENGTH = 16
#: Jaeger's trace view; the page replaces the placeholder with a record's trace id.
TRACE_ID_PLACEHOLDER = "{trace_id}"
DEFAULT_TRACE_URL = f"http://localhost:16686/trace/{TRACE_ID_PLACEHOLDER}"


class ConfigError(ValueError):
    """A configuration value is unusable; ``str()`` is the one line to print."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"settings: {variable}: {problem}")
        self.variable = variable
        self.problem = problem


class BrokerSettings(BaseSettings):
    """How long any wait on a Redis broker may last, and how a silent one is noticed.

    ``telemetry.install(app)`` applies them to the app's broker and result backend
    where the app has not set its own (``telemetry.transport.bounds``), in every
    process, so they are read on their own, before the rest, when the app is
    configured. docs/transit.md gives the worst case each one allows.
    """

    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="ignore")

    # Any one command on a broker connection, publishes and acks included.
    broker_socket_timeout: PositiveFloat = 5
    broker_connect_timeout: PositiveFloat = 5
    # TCP keepalive on every broker connection (kombu turns redis-py's off).
    broker_keepalive_idle: KeepaliveSeconds = 30
    broker_keepalive_interval: KeepaliveSeconds = 5
    broker_keepalive_count: KeepaliveProbes = 3
    # kombu's checks of its long-lived connections, and redis-py's PING before a
    # command on a connection idle this long.
    broker_health_check_interval: float = 10
    # Messages leave their queue by an atomic move (telemetry.transport.fetch).
    broker_reliable_fetch: bool = True

    @field_validator("broker_health_check_interval")
    @classmethod
    def _checks_on(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(
                "must be above 0: 0 turns off kombu's checks of its long-lived connections, "
                "and a silent broker then goes unnoticed"
            )
        return value


class TelemetrySettings(BrokerSettings):
    """Every knob of the telemetry, validated together. Field names are the variables."""

    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="ignore")

    telemetry_enabled: bool = True
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, Field(ge=1, le=65535)] = 9464
    metrics_render_interval: Annotated[float, Field(ge=0)] = 1
    metrics_max_task_names: PositiveInt = 500
    liveness_timeout: PositiveFloat = 60
    queue_poll_interval: PositiveFloat = 5
    # Workers may leave the broker's state to the broker exporter (``python -m
    # telemetry.broker_exporter``), which serves it on its own port.
    queue_poll_enabled: bool = True
    broker_exporter_port: Annotated[int, Field(ge=1, le=65535)] = 9465
    readiness_interval: PositiveFloat = 15
    readiness_required: str | None = None
    trace_task_args: bool = False
    # Duplicate executions: (task id, retries) pairs started within this many
    # seconds, at most this many kept (oldest evicted first).
    duplicate_window: PositiveFloat = 3600
    duplicate_window_max: PositiveInt = 100_000
    # Poison safety (``telemetry.deadletters``): a queue item over this size is
    # dead-lettered unparsed; the dead-letter list is capped at this many records
    # and bytes (oldest trimmed first); a task whose pool process died is retried
    # after this many seconds (Celery's own retry would wait ``default_retry_delay``).
    max_message_bytes: PositiveInt = 1_048_576
    deadletter_max: PositiveInt = 10_000
    deadletter_max_bytes: PositiveInt = 67_108_864
    worker_lost_retry_delay: Annotated[float, Field(ge=0)] = 1
    # celery beat (``telemetry.beat``): its own port, the tick age /livez allows
    # (None: Celery's own rule, see ``telemetry.beat.health``), and how many
    # schedule entries get series of their own (the rest count as entry="other").
    beat_metrics_port: Annotated[int, Field(ge=1, le=65535)] = 9466
    beat_liveness_timeout: PositiveFloat | None = None
    beat_max_entries: PositiveInt = 500
    # The span export process logs as the worker does.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Failed work (``telemetry.failed``): the exhausted set's caps and age (seconds,
    # by failed_at), the dead letters' optional age, and whether the operator API
    # shows task arguments.
    exhausted_max: PositiveInt = 10_000
    exhausted_max_bytes: PositiveInt = 67_108_864
    exhausted_ttl: PositiveFloat = 604_800
    deadletter_ttl: PositiveFloat | None = None
    failed_show_arguments: bool = False
    # The operator API (``telemetry.ops``), served by the broker exporter on its own bind.
    ops_host: str = "127.0.0.1"
    ops_port: Port = 9467
    ops_token: SecretStr | None = None
    ops_read_open: bool = False
    # Comma-separated Host names the API answers; None: localhost, 127.0.0.1, [::1]
    # and OPS_HOST when it names a specific address.
    ops_allowed_hosts: str | None = None
    # Comma-separated addresses or networks whose X-Forwarded-For is believed.
    ops_trusted_proxies: str = ""
    # Where the failed-work page links a record's trace: {trace_id} is replaced by its id.
    ops_trace_url: str = DEFAULT_TRACE_URL

    @field_validator("ops_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_OPS_TOKEN_LENGTH:
            raise ValueError(f"at least {MIN_OPS_TOKEN_LENGTH} characters")
        return value

    @field_validator("ops_allowed_hosts")
    @classmethod
    def _host_names(cls, value: str | None) -> str | None:
        if value is not None and not [name for name in value.split(",") if name.strip()]:
            raise ValueError("names no host")
        return value

    @field_validator("ops_trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for entry in (part.strip() for part in value.split(",")):
            if entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"{entry!r} is not an address or network") from None
        return value

    @field_validator("ops_trace_url")
    @classmethod
    def _trace_link(cls, value: str) -> str:
        # The page puts it in a link's href: only a web address, never javascript: or data:.
        if TRACE_ID_PLACEHOLDER not in value:
            raise ValueError(f"must contain {TRACE_ID_PLACEHOLDER}")
        parts = urlsplit(value.replace(TRACE_ID_PLACEHOLDER, "0"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("an http:// or https:// address")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _a_blocked_command_stays_within_liveness(self) -> TelemetrySettings:
        # An ack or a reservation that times out is retried once on a fresh
        # connection: the event loop waits for both, and for the new connection.
        blocked = 2 * self.broker_socket_timeout + self.broker_connect_timeout
        if blocked >= self.liveness_timeout:
            raise ConfigError(
                "BROKER_SOCKET_TIMEOUT",
                f"2 x BROKER_SOCKET_TIMEOUT + BROKER_CONNECT_TIMEOUT ({blocked:g}s) must stay "
                f"below LIVENESS_TIMEOUT ({self.liveness_timeout:g}s): one blocked command "
                "would stop the event loop past it",
            )
        return self

    @field_validator("readiness_required")
    @classmethod
    def _known_checks(cls, value: str | None) -> str | None:
        if value is None:
            return None
        unknown = set(required_names(value)) - set(READINESS_CHECKS)
        if unknown:
            raise ValueError(
                f"unknown check(s) {', '.join(sorted(unknown))}; known: {', '.join(READINESS_CHECKS)}"
            )
        return value


def required_names(configured: str) -> frozenset[str]:
    """The check names of a comma-separated ``READINESS_REQUIRED``."""
    return frozenset(name.strip() for name in configured.split(",") if name.strip())


Model = TypeVar("Model", bound=BaseSettings)


def read_settings(model: type[Model]) -> Model:
    """Read and validate ``model`` from the process environment.

    Raises:
        ConfigError: naming the first bad variable and what is wrong with it.
    """
    try:
        return model()
    except ConfigError:
        raise
    except ValidationError as exc:
        raise first_problem(exc) from None


def first_problem(exc: ValidationError) -> ConfigError:
    """The first error of a validation, as one line; a validator's own ConfigError as is."""
    error = exc.errors(include_input=False)[0]
    wrapped = (error.get("ctx") or {}).get("error")
    if isinstance(wrapped, ConfigError):
        return wrapped
    variable = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
    message = error["msg"].removeprefix("Value error, ")
    return ConfigError(variable, message)
