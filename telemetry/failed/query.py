"""Which records a request means: the filter, its validation, and the page of a listing.

    query = Query.parse({"kind": "exhausted", "task": "send_invoice", "limit": "50"})
    query.filter.matches(summary)      # a listing item
    Query.parse({...}) raises BadInput("limit: at most 1000") on anything it does not know

The keys are those of ``GET /api/v1/failed``: ``kind``, ``queue``, ``task``,
``reason``, ``exception`` (exact), ``since`` and ``until`` (RFC 3339, with a
time zone; ``since <= failed_at < until``), ``q`` (a case-insensitive substring
of the task, the exception or the message, never of arguments), ``cursor`` and
``limit``. The cursor is the last item's (``failed_at``, ``id``), opaque to
clients; a listing is newest first, ties broken by id.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telemetry.failed.records import Kind

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
FILTER_KEYS = ("kind", "queue", "task", "reason", "exception", "since", "until", "q")
QUERY_KEYS = (*FILTER_KEYS, "cursor", "limit")
#: Longest accepted value of a text key.
MAX_VALUE_LENGTH = 1024


class BadInput(ValueError):
    """A request the API refuses with 400; ``str()`` names the key and the problem."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def parse_time(key: str, value: Any) -> float:
    """An RFC 3339 time as Unix seconds; a time without its offset is refused."""
    if not isinstance(value, str):
        raise BadInput(key, "an RFC 3339 time as a string")
    try:
        when = datetime.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise BadInput(key, "not an RFC 3339 time (e.g. 2026-12-07T10:00:00Z)") from None
    if when.tzinfo is None:
        raise BadInput(key, "an RFC 3339 time needs its offset (Z or +hh:mm)")
    return when.timestamp()


def rfc3339(timestamp: float) -> str:
    return (
        datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def encode_cursor(failed_at: float, record_id: str) -> str:
    text = json.dumps([failed_at, record_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(value: Any) -> tuple[float, str]:
    if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
        raise BadInput("cursor", "not a cursor this API returned")
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        failed_at, record_id = data
        if isinstance(failed_at, bool) or not isinstance(failed_at, int | float):
            raise TypeError
        if not isinstance(record_id, str):
            raise TypeError
    except (binascii.Error, ValueError, TypeError):
        raise BadInput("cursor", "not a cursor this API returned") from None
    return float(failed_at), record_id


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput(key, "a non-empty string")
    if len(value) > MAX_VALUE_LENGTH:
        raise BadInput(key, f"at most {MAX_VALUE_LENGTH} characters")
    return value


@dataclass(frozen=True)
class Filter:
    """What records to match; every key given must match."""

    kind: str | None = None
    queue: str | None = None
    task: str | None = None
    reason: str | None = None
    exception: str | None = None
    since: float | None = None
    until: float | None = None
    q: str | None = None

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return (Kind(self.kind),) if self.kind is not None else (Kind.EXHAUSTED, Kind.DEAD_LETTER)

    def matches(self, item: Mapping[str, Any]) -> bool:
        """Whether a listing item (``telemetry.failed.records.summary_from_json``) matches;
        the time window is the store's (``FailedStore.window``)."""
        for key in ("kind", "queue", "task", "reason", "exception"):
            wanted = getattr(self, key)
            if wanted is not None and item.get(key) != wanted:
                return False
        if self.q is not None:
            needle = self.q.casefold()
            return any(
                needle in str(item.get(key) or "").casefold()
                for key in ("task", "exception", "message")
            )
        return True

    def describe(self) -> dict[str, Any]:
        """The filter as given, for the audit trail."""
        shown: dict[str, Any] = {}
        for key in FILTER_KEYS:
            value = getattr(self, key)
            if value is not None:
                shown[key] = rfc3339(value) if key in ("since", "until") else value
        return shown


@dataclass(frozen=True)
class Query:
    filter: Filter
    cursor: tuple[float, str] | None = None
    limit: int | None = DEFAULT_LIMIT

    @classmethod
    def parse(cls, given: Mapping[str, Any], *, default_limit: int | None = DEFAULT_LIMIT) -> Query:
        """From query parameters (strings) or a JSON body's ``filter`` (strings, a number
        for ``limit``). Raises :class:`BadInput` on an unknown key or a bad value."""
        for key in given:
            if key not in QUERY_KEYS:
                raise BadInput(key, f"unknown key; known: {', '.join(QUERY_KEYS)}")
        fields: dict[str, Any] = {}
        for key in FILTER_KEYS:
            if key not in given:
                continue
            value = given[key]
            if key in ("since", "until"):
                fields[key] = parse_time(key, value)
            else:
                fields[key] = _text(key, value)
        kind = fields.get("kind")
        if kind is not None and kind not in {k.value for k in Kind}:
            raise BadInput("kind", f"one of {', '.join(k.value for k in Kind)}")
        since, until = fields.get("since"), fields.get("until")
        if since is not None and until is not None and since >= until:
            raise BadInput("until", "must be later than since")
        cursor = decode_cursor(given["cursor"]) if "cursor" in given else None
        limit = _limit(given["limit"]) if "limit" in given else default_limit
        return cls(Filter(**fields), cursor, limit)


def _limit(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput("limit", "a whole number from 1 to 1000")
    if value < 1:
        raise BadInput("limit", "at least 1")
    if value > MAX_LIMIT:
        raise BadInput("limit", f"at most {MAX_LIMIT}")
    return value
