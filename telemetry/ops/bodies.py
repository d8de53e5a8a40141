"""The operator API's request inputs: query strings and action bodies, validated.

    query = parse_query("kind=exhausted&limit=50", allowed=QUERY_KEYS)
    action = parse_action(b'{"ids": ["..."], "dry_run": true}', "requeue")

Anything wrong is a :class:`~telemetry.failed.query.BadInput` naming the key
and the problem, which the server answers with 400.

An action body is ``{"ids": [...]}`` or ``{"filter": {query keys}}``, with
``"dry_run": true|false`` (required, so that no write happens by omission) and,
for a requeue, ``"force": true`` to requeue canvas members too. A filter
without ``limit`` means every matching record.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from telemetry.failed.operations import Selection
from telemetry.failed.query import MAX_VALUE_LENGTH, BadInput, Query

#: Ids one action may name; a larger set is acted on by filter.
MAX_IDS = 10_000


def parse_query(query: str, allowed: Collection[str]) -> Query:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except ValueError:
        raise BadInput("query", "too many keys") from None
    given: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            raise BadInput(key, f"unknown key; known: {', '.join(allowed)}")
        if key in given:
            raise BadInput(key, "given more than once")
        given[key] = value
    return Query.parse(given)


@dataclass(frozen=True)
class Action:
    selection: Selection
    dry_run: bool
    force: bool = False


def parse_action(body: bytes, action: str) -> Action:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, RecursionError, ValueError):
        raise BadInput("body", "not JSON") from None
    if not isinstance(data, dict):
        raise BadInput("body", "a JSON object")
    known = (
        ("ids", "filter", "dry_run", "force")
        if action == "requeue"
        else ("ids", "filter", "dry_run")
    )
    for key in data:
        if key not in known:
            raise BadInput(key, f"unknown key; known: {', '.join(known)}")
    if ("ids" in data) == ("filter" in data):
        raise BadInput("body", 'give either "ids" or "filter"')
    dry_run = data.get("dry_run")
    if not isinstance(dry_run, bool):
        raise BadInput("dry_run", "required: true or false")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise BadInput("force", "true or false")
    if "ids" in data:
        return Action(Selection(ids=_ids(data["ids"])), dry_run, force)
    flt = data["filter"]
    if not isinstance(flt, dict):
        raise BadInput("filter", "a JSON object of query keys")
    try:
        query = Query.parse(flt, default_limit=None)
    except BadInput as exc:
        raise BadInput(f"filter.{exc.key}", exc.problem) from None
    return Action(Selection(query=query), dry_run, force)


def _ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise BadInput("ids", "a non-empty list of record ids")
    if len(value) > MAX_IDS:
        raise BadInput("ids", f"at most {MAX_IDS}; act on more by filter")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_VALUE_LENGTH:
            raise BadInput("ids", "each a record id (a non-empty string)")
    return tuple(value)
