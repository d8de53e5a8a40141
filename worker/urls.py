"""Credential scrubbing for URLs that reach logs, /readyz, /metrics or spans."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"


def redact_url(url: str) -> str:
    """Return ``url`` with any user name and password replaced by ``***``.

    >>> redact_url("redis://:s3cret@cache:6379/0")
    'redis://***@cache:6379/0'
    """
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return REDACTED
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))
