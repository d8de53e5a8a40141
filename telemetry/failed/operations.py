"""What an operator can do with failed work; the operator API and the CLI both call these.

    work = FailedWork(stores, requeuer, show_arguments=False)
    work.listing(Query.parse({"kind": "exhausted"}))    # {"items", "count", "next"}
    work.show(record_id)                             # the whole record, or None
    work.groups(Query.parse({...}).filter)           # counts by kind, queue, task, exception
    work.requeue(Selection(ids=[...]), dry_run=True) # {"matched", "requeued", "skipped"}
    work.delete(Selection(query=...), dry_run=False) # {"matched", "deleted", "skipped"}

A listing reads the summaries only (``FailedStore.summaries``), never envelopes
or tracebacks. ``count`` is every record matching the filter, across pages.
``matched`` is every record a selection names (ids not found included, and
skipped as ``not_found``), so ``matched`` is the acted-on count plus every
skip; a dry run asks the same questions as the real run and changes nothing.

Unless ``show_arguments`` (``FAILED_SHOW_ARGUMENTS=true``), nothing returned
carries a message body, ``argsrepr``, ``kwargsrepr`` or the argument text of a
``MaxRetriesExceededError`` (``telemetry.failed.redaction``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from telemetry.deadletters.policy import PoisonPolicy
from telemetry.failed.locate import stores_for_app
from telemetry.failed.query import Filter, Query, encode_cursor, rfc3339
from telemetry.failed.records import FailedRecord
from telemetry.failed.redaction import public_envelope, redact
from telemetry.failed.requeue import NOT_FOUND, Prepared, Requeuer
from telemetry.failed.store import FailedStore
from telemetry.settings import TelemetrySettings

#: Records read and acted on at a time by the bulk actions.
ACTION_BATCH = 500

#: Called once per requeued record: kind, queue, task.
OnRequeued = Callable[[str, str, str | None], None]


@dataclass(frozen=True)
class Selection:
    """The records a write acts on: ``ids``, or every record matching ``query``."""

    ids: tuple[str, ...] | None = None
    query: Query | None = None

    def describe(self) -> dict[str, Any]:
        if self.ids is not None:
            return {"ids": list(self.ids)}
        assert self.query is not None
        shown: dict[str, Any] = {"filter": self.query.filter.describe()}
        if self.query.limit is not None:
            shown["limit"] = self.query.limit
        return shown


@dataclass
class ActionResult:
    action: str
    matched: int = 0
    done: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        done_key = "requeued" if self.action == "requeue" else "deleted"
        return {"matched": self.matched, done_key: self.done, "skipped": dict(self.skipped)}


@dataclass(frozen=True)
class _Match:
    failed_at: float
    id: str
    kind: str
    item: dict[str, Any]


class FailedWork:
    """Both kinds' stores, read and acted on together."""

    def __init__(
        self,
        stores: Mapping[str, FailedStore],
        requeuer: Requeuer,
        *,
        show_arguments: bool = False,
        on_requeued: OnRequeued | None = None,
    ) -> None:
        self.stores = dict(stores)
        self.requeuer = requeuer
        self.show_arguments = show_arguments
        self.on_requeued = on_requeued

    @classmethod
    def for_app(
        cls,
        app: Celery,
        settings: TelemetrySettings,
        queues: Iterable[str] | None,
        on_requeued: OnRequeued | None = None,
    ) -> FailedWork:
        """``app``'s failed work; a message goes back only to one of ``queues`` (None: any)."""
        return cls(
            stores_for_app(app, settings),
            Requeuer(app, queues, PoisonPolicy.of(app.conf.accept_content, settings)),
            show_arguments=settings.failed_show_arguments,
            on_requeued=on_requeued,
        )

    # Reading -------------------------------------------------------------------------
    def _matches(self, flt: Filter) -> list[_Match]:
        """Every record matching ``flt``, newest first (ties by id, descending)."""
        found: list[_Match] = []
        for kind in flt.kinds:
            for item in self.stores[kind].listed(flt.since, flt.until):
                if flt.matches(item):
                    found.append(_Match(float(item["failed_at"] or 0.0), item["id"], kind, item))
        found.sort(key=lambda match: (match.failed_at, match.id), reverse=True)
        return found

    def _page(self, query: Query) -> tuple[list[_Match], int, str | None]:
        matches = self._matches(query.filter)
        count = len(matches)
        if query.cursor is not None:
            matches = [m for m in matches if (m.failed_at, m.id) < query.cursor]
        if query.limit is None or len(matches) <= query.limit:
            return matches, count, None
        page = matches[: query.limit]
        last = page[-1]
        return page, count, encode_cursor(last.failed_at, last.id)

    @staticmethod
    def _item(match: _Match) -> dict[str, Any]:
        return {**match.item, "failed_at": rfc3339(match.failed_at)}

    def listing(self, query: Query) -> dict[str, Any]:
        page, count, cursor = self._page(query)
        return {"items": [self._item(m) for m in page], "count": count, "next": cursor}

    def groups(self, flt: Filter) -> dict[str, Any]:
        """Counts and the newest time by (kind, queue, task, exception), newest group first."""
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        matches = self._matches(flt)
        for match in matches:
            item = match.item
            key = (match.kind, item.get("queue"), item.get("task"), item.get("exception"))
            group = groups.get(key)
            if group is None:
                groups[key] = group = {
                    "kind": match.kind,
                    "queue": item.get("queue"),
                    "task": item.get("task"),
                    "exception": item.get("exception"),
                    "count": 0,
                    "newest": rfc3339(match.failed_at),  # matches are newest first
                }
            group["count"] += 1
        return {"groups": list(groups.values()), "count": len(matches)}

    def find(self, record_id: str) -> FailedRecord | None:
        for store in self.stores.values():
            record = store.get(record_id)
            if record is not None:
                return record
        return None

    def show(self, record_id: str) -> dict[str, Any] | None:
        """The whole record as the API shows it, traceback included."""
        record = self.find(record_id)
        return None if record is None else self.public(record)

    def public(self, record: FailedRecord) -> dict[str, Any]:
        counts = None if self.show_arguments else record.arguments
        hide = (lambda text: text) if self.show_arguments else (lambda text: redact(text, counts))
        try:
            envelope: Any = json.loads(record.raw) if record.raw else None
        except ValueError:
            envelope = None
        shown = {
            "id": record.id,
            "kind": record.kind,
            "queue": record.queue,
            "task": record.task,
            "task_id": record.task_id,
            "reason": record.reason,
            "exception": record.exception,
            "message": hide(record.message),
            "failed_at": rfc3339(record.failed_at),
            "retries": record.retries,
            "trace_id": record.trace_id,
            "span_id": record.span_id,
            "hostname": record.hostname,
            "traceback": hide(record.traceback),
            "envelope": envelope if self.show_arguments else public_envelope(envelope),
        }
        if self.show_arguments:
            shown["raw"] = record.raw
        return shown

    # Acting ----------------------------------------------------------------------------
    def _selected(self, selection: Selection, result: ActionResult) -> dict[str, list[str]]:
        """The selected ids by kind; counts ``matched`` and the ids not found."""
        by_kind: dict[str, list[str]] = {kind: [] for kind in self.stores}
        if selection.query is not None:
            matches, _, _ = self._page(selection.query)
            for match in matches:
                by_kind[match.kind].append(match.id)
            result.matched = len(matches)
            return by_kind
        ids = list(dict.fromkeys(selection.ids or ()))
        result.matched = len(ids)
        missing = set(ids)
        for kind, store in self.stores.items():
            if not missing:
                break
            candidates = [record_id for record_id in ids if record_id in missing]
            pipe = store.client.pipeline(transaction=False)
            for record_id in candidates:
                pipe.hexists(store.keys.records, record_id)
            for record_id, exists in zip(candidates, pipe.execute(), strict=True):
                if exists:
                    by_kind[kind].append(record_id)
                    missing.discard(record_id)
        if missing:
            result.skipped[NOT_FOUND] += len(missing)
        return by_kind

    def requeue(self, selection: Selection, *, dry_run: bool, force: bool = False) -> ActionResult:
        result = ActionResult("requeue")
        for kind, ids in self._selected(selection, result).items():
            store = self.stores[kind]
            for start in range(0, len(ids), ACTION_BATCH):
                batch = ids[start : start + ACTION_BATCH]
                ready: list[Prepared] = []
                for record in store.records(batch):
                    if record is None:
                        result.skipped[NOT_FOUND] += 1
                        continue
                    prepared = self.requeuer.prepare(record, force)
                    if isinstance(prepared, str):
                        result.skipped[prepared] += 1
                    else:
                        ready.append(prepared)
                if dry_run:
                    continue
                for item, pushed in zip(ready, self.requeuer.push(store, ready), strict=True):
                    if not pushed:
                        result.skipped[NOT_FOUND] += 1
                        continue
                    result.done += 1
                    if self.on_requeued is not None:
                        self.on_requeued(kind, item.record.queue, item.record.task)
        return result

    def delete(self, selection: Selection, *, dry_run: bool) -> ActionResult:
        result = ActionResult("delete")
        for kind, ids in self._selected(selection, result).items():
            if dry_run or not ids:
                continue
            removed = self.stores[kind].delete(ids)
            result.done += removed
            if removed < len(ids):
                result.skipped[NOT_FOUND] += len(ids) - removed
        return result
