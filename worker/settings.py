"""The worker's configuration: one frozen object, read from the environment once.

Usage::

    settings = load_settings()          # raises SettingsError on a bad value
    settings.broker_url                 # CELERY_BROKER_URL, else REDIS_URL

Nothing here runs at import. The Celery app reads the settings when it is first
configured (see ``worker.celery_app``); every other function takes them as an
argument instead of calling ``os.getenv``. A bad value is reported as exactly
one line, ``settings: <VAR>: <problem>``, and the value itself is never echoed
because it may hold a credential.
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from telemetry.settings import ConfigError, TelemetrySettings, read_settings
from worker.urls import REDACTED, redact_url

BROKER_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://")
SENTINEL_SCHEME = "sentinel://"
#: The URL variables a Redis broker or result backend is read from.
REDIS_URL_VARIABLES = ("redis_url", "celery_broker_url", "celery_result_backend")
DATABASE_SCHEMES = ("postgresql+asyncpg://", "sqlite+aiosqlite://")
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./jobpilot.db"
# Kombu's Redis visibility timeout must outlast the longest a message can be
# legitimately unacked: a full hard time limit plus the longest retry countdown.
VISIBILITY_MARGIN = 1.1

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class SettingsError(ConfigError):
    """A worker setting is unusable; ``str()`` is the one line to print."""


class Settings(TelemetrySettings):
    """Every knob of the worker, validated together. Field names are the variables.

    The telemetry's own variables (``TELEMETRY_ENABLED``, ``METRICS_*``,
    ``READINESS_*``, the dead-letter limits, ...) come from
    :class:`telemetry.settings.TelemetrySettings`.
    """

    redis_url: str = "redis://localhost:6379/0"
    celery_broker_url: str | None = None
    celery_result_backend: str | None = None
    broker_key_prefix: str = ""
    broker_visibility_timeout: PositiveInt = 3600
    max_retry_countdown: Annotated[int, Field(ge=0)] = 600
    # How often kombu looks for unacked messages past their visibility timeout
    # (interval x throttle seconds); kombu's defaults, lowered only by tests.
    broker_unacked_restore_interval: PositiveFloat = 10
    broker_unacked_restore_throttle: PositiveInt = 10
    task_soft_time_limit: PositiveFloat = 300
    task_time_limit: PositiveFloat = 360
    worker_max_tasks_per_child: PositiveInt | None = None
    result_expires: PositiveInt = 86400
    database_url: str | None = None
    redis_tls_ca_file: str | None = None
    # Redis Sentinel: the master's name, the sentinels' own password, TLS to the
    # sentinels and the master. Only with sentinel:// URLs.
    broker_sentinel_master: str | None = None
    broker_sentinel_password: str | None = None
    broker_sentinel_tls: bool = False
    # Celery reads these two straight from the environment: refused when set.
    celery_broker_read_url: str | None = None
    celery_broker_write_url: str | None = None

    @field_validator(*REDIS_URL_VARIABLES)
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        urls = value.split(";")
        if len(urls) > 1 and not all(url.startswith(SENTINEL_SCHEME) for url in urls):
            raise ValueError(
                "a ;-separated list is supported for sentinel:// URLs only: a failover list of "
                "Redis servers is not, as kombu would switch servers that do not replicate "
                "each other; give one URL, or the sentinels"
            )
        if not all(url.startswith(BROKER_SCHEMES) for url in urls):
            raise ValueError(f"must start with one of {', '.join(BROKER_SCHEMES)}")
        return value

    @field_validator("celery_broker_read_url", "celery_broker_write_url")
    @classmethod
    def _not_supported(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(
                "not supported: Celery reads it from the environment past these settings' "
                "checks; set CELERY_BROKER_URL"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(DATABASE_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(DATABASE_SCHEMES)}")
        return value

    @field_validator("redis_tls_ca_file")
    @classmethod
    def _ca_file_exists(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isfile(value):
            raise ValueError("no such file")
        return value

    @model_validator(mode="after")
    def _limits_agree(self) -> Settings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise SettingsError(
                "TASK_SOFT_TIME_LIMIT",
                f"must be below TASK_TIME_LIMIT ({self.task_time_limit:g}s)",
            )
        floor = VISIBILITY_MARGIN * (self.task_time_limit + self.max_retry_countdown)
        if self.broker_visibility_timeout <= floor:
            raise SettingsError(
                "BROKER_VISIBILITY_TIMEOUT",
                f"must exceed 1.1 x (TASK_TIME_LIMIT + MAX_RETRY_COUNTDOWN) = {floor:g}s, "
                "or unacked messages are redelivered while still running",
            )
        self._sentinel_agrees()
        return self

    def _sentinel_agrees(self) -> None:
        if self.uses_sentinel and not self.broker_sentinel_master:
            raise SettingsError(
                "BROKER_SENTINEL_MASTER", "required with sentinel:// URLs: the master's name"
            )
        if self.uses_sentinel:
            return
        for name in ("broker_sentinel_master", "broker_sentinel_password", "broker_sentinel_tls"):
            if getattr(self, name):
                raise SettingsError(
                    name.upper(),
                    "set without a sentinel:// URL in REDIS_URL, CELERY_BROKER_URL or "
                    "CELERY_RESULT_BACKEND",
                )

    @property
    def uses_sentinel(self) -> bool:
        """Whether the broker or the result backend is found through Sentinel."""
        return any(
            url.startswith(SENTINEL_SCHEME) for url in (self.broker_url, self.result_backend)
        )

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def result_backend(self) -> str:
        return self.celery_result_backend or self.broker_url

    @property
    def database_configured(self) -> bool:
        """True when DATABASE_URL was set; readiness checks the database only then."""
        return self.database_url is not None

    @property
    def effective_database_url(self) -> str:
        return self.database_url or DEFAULT_DATABASE_URL

    def describe(self) -> dict[str, object]:
        """The settings with every URL's credentials scrubbed, for logs and /readyz."""
        shown = self.model_dump()
        for key in (*REDIS_URL_VARIABLES, "database_url"):
            if shown[key] is not None:
                shown[key] = ";".join(redact_url(url) for url in shown[key].split(";"))
        if shown["broker_sentinel_password"] is not None:
            shown["broker_sentinel_password"] = REDACTED
        return shown


def load_settings() -> Settings:
    """Read and validate the settings from the process environment.

    Raises:
        SettingsError: naming the first bad variable and what is wrong with it.
    """
    try:
        return read_settings(Settings)
    except SettingsError:
        raise
    except ConfigError as exc:
        raise SettingsError(exc.variable, exc.problem) from None
