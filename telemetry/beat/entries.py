"""Where a scheduler keeps its entries, read at start and after beat's ticks.

    source = entry_source(scheduler)
    source.read()               # name -> entry: every entry, at start
    source.changed(now)         # the same, or None when nothing can have changed

Celery's own ``Scheduler.tick`` (``PersistentScheduler``, django-celery-beat's
``DatabaseScheduler``) copies the schedule whenever it sees it change
(``old_schedulers``), so a change costs one identity check to notice.
RedBeat keeps every entry's key in a sorted set and loads only the due ones on
each tick: its keys are read at most once a second, and only new keys are
loaded. Any other scheduler's ``schedule`` mapping is read at most once a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from celery.beat import Scheduler

#: The least time between two reads of a schedule that does not say when it changed.
REFRESH_SECONDS = 1.0


class EntrySource(Protocol):
    #: True when a change may be an edit of a known entry, not only names that came or went.
    edits: bool

    def read(self) -> Mapping[str, Any]: ...

    def changed(self, now: float) -> Mapping[str, Any] | None: ...


class HeapEntries:
    """Celery's ``Scheduler.tick``: ``old_schedulers`` is a new copy each time the schedule changed."""

    edits = True

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._seen: Any = None

    def read(self) -> Mapping[str, Any]:
        return dict(self.scheduler.schedule)

    def changed(self, now: float) -> Mapping[str, Any] | None:
        current = self.scheduler.old_schedulers
        if current is None or current is self._seen:
            return None
        self._seen = current
        return dict(current)


class RedBeatEntries:
    """RedBeat: every entry's key is in ``redbeat_conf.schedule_key``, a sorted set by due time."""

    edits = False

    def __init__(self, scheduler: Any) -> None:
        # Imported here: only a beat that runs RedBeat has it installed.
        from redbeat.schedulers import get_redis

        self.app = scheduler.app
        self.entry_class = scheduler.Entry
        self.client = get_redis(self.app)
        self.schedule_key = self.app.redbeat_conf.schedule_key
        self._entries: dict[str, Any] = {}
        self._read_at = float("-inf")

    def read(self) -> Mapping[str, Any]:
        keys = {
            k.decode() if isinstance(k, bytes) else str(k)
            for k in self.client.zrange(self.schedule_key, 0, -1)
        }
        for gone in set(self._entries) - keys:
            del self._entries[gone]
        for key in sorted(keys - set(self._entries)):
            try:
                self._entries[key] = self.entry_class.from_key(key, app=self.app)
            except KeyError:  # removed between the two reads
                continue
        return {str(entry.name): entry for entry in self._entries.values()}

    def changed(self, now: float) -> Mapping[str, Any] | None:
        if now - self._read_at < REFRESH_SECONDS:
            return None
        self._read_at = now
        return self.read()


class ScheduleEntries:
    """Any other scheduler: its ``schedule`` mapping, at most once a second."""

    edits = True

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._read_at = float("-inf")

    def read(self) -> Mapping[str, Any]:
        return dict(self.scheduler.schedule)

    def changed(self, now: float) -> Mapping[str, Any] | None:
        if now - self._read_at < REFRESH_SECONDS:
            return None
        self._read_at = now
        return self.read()


def entry_source(scheduler: Any) -> EntrySource:
    if getattr(scheduler.app, "redbeat_conf", None) is not None and hasattr(
        scheduler.Entry, "from_key"
    ):
        return RedBeatEntries(scheduler)
    if type(scheduler).tick is Scheduler.tick:
        return HeapEntries(scheduler)
    return ScheduleEntries(scheduler)
