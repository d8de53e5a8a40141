"""The gap between "at least once" and "once": duplicate executions and ETAs past the visibility timeout.

    window = StartedWindow(seconds=3600, max_pairs=100_000)
    window.seen(task_id, retries)         # True: this worker already started that pair
    window.seen(task_id, 0, requeue=1)    # a requeue from the failed-work set is a new pair
    trap = EtaTrap(visibility_timeout=3600, default_hard_limit=360)
    trap.beyond(task, eta, hard_limit)    # seconds past what the timeout allows, or None

On Redis, kombu keeps every delivered message in an "unacked" record until the
worker acknowledges it; a record older than the visibility timeout is restored
to its queue and delivered again. A task whose ETA (or countdown) is further
away than the visibility timeout, less its hard time limit, is held unacked that
long: it is restored while it waits, and a second worker runs it too (Celery
#5935, #3312, #6229; kombu #337). :class:`EtaTrap` names such deliveries at
receipt; :class:`StartedWindow` notices the second start when one worker gets
both copies.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

logger = logging.getLogger("telemetry.metrics")

#: A task's ETA warning is logged at most once per this many seconds.
ETA_LOG_INTERVAL_SECONDS = 3600.0
#: Tasks whose last warning time is remembered; past it, the oldest is forgotten.
MAX_LOGGED_TASKS = 1024


class StartedWindow:
    """The (task id, retries) pairs started in the last ``seconds``, at most ``max_pairs``.

    A message put back from the failed-work set carries ``x-jobpilot-requeue: <n>``
    and starts again at retries 0: its ``requeue`` count keeps the rerun apart.

    One ``OrderedDict`` in start order: a start expires what is older than the
    window from the front and evicts the oldest past ``max_pairs``, both O(1).
    """

    def __init__(
        self,
        seconds: float,
        max_pairs: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.max_pairs = max_pairs
        self.clock = clock
        self._started: OrderedDict[tuple[str, int, int], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._started)

    def seen(self, task_id: str, retries: int, requeue: int = 0) -> bool:
        """Record a start; True when the same pair (and requeue) started within the window."""
        now = self.clock()
        started = self._started
        horizon = now - self.seconds
        while started:
            oldest = next(iter(started.values()))
            if oldest >= horizon:
                break
            started.popitem(last=False)
        key = (task_id, retries, requeue)
        again = key in started
        if again:
            started.move_to_end(key)
        started[key] = now
        if len(started) > self.max_pairs:
            started.popitem(last=False)
        return again


class KeyedLogThrottle:
    """Whether a line about ``key`` is due: once per ``interval`` per key, for a bounded set of keys."""

    def __init__(
        self,
        interval: float = ETA_LOG_INTERVAL_SECONDS,
        max_keys: int = MAX_LOGGED_TASKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self.clock = clock
        self._last: OrderedDict[Hashable, float] = OrderedDict()

    def due(self, key: Hashable) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        if len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return True


class EtaTrap:
    """Deliveries whose ETA is further away than the visibility timeout allows."""

    def __init__(
        self,
        visibility_timeout: float,
        default_hard_limit: float | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.visibility_timeout = visibility_timeout
        self.default_hard_limit = default_hard_limit
        self.clock = clock
        self._log = KeyedLogThrottle()

    def beyond(self, task: str, eta: datetime.datetime, hard_limit: float | None) -> float | None:
        """How many seconds ``eta`` lies past ``visibility timeout - hard limit`` from now
        (the request's limit, else the app's), or None when it does not. Logs once per
        (task, hour)."""
        limit = hard_limit if hard_limit else (self.default_hard_limit or 0.0)
        allowed = self.visibility_timeout - limit
        wait = eta.timestamp() - self.clock()
        if wait <= allowed:
            return None
        excess = wait - allowed
        if self._log.due(task):
            logger.warning(
                "task %s has an ETA %.0f s away, %.0f s beyond what the visibility timeout "
                "(%.0f s) allows with a %.0f s hard time limit: the broker will restore the "
                "message while it waits and another worker will run it too",
                task,
                wait,
                excess,
                self.visibility_timeout,
                limit,
            )
        return excess


class CountdownCheck:
    """At publish: warns once per (task, hour) when a countdown or ETA exceeds the visibility timeout."""

    def __init__(self, visibility_timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.visibility_timeout = visibility_timeout
        self.clock = clock
        self._log = KeyedLogThrottle()

    def check(self, task: str, eta: object) -> bool:
        """``eta``: the message's ``eta`` header (ISO 8601, or None). True when it exceeds."""
        if not isinstance(eta, str):
            return False
        try:
            when = datetime.datetime.fromisoformat(eta)
        except ValueError:
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        wait = when.timestamp() - self.clock()
        if wait <= self.visibility_timeout:
            return False
        if self._log.due(task):
            logger.warning(
                "task %s published with an ETA %.0f s away, beyond the broker's visibility "
                "timeout (%.0f s): the message will be restored while a worker holds it, "
                "and run twice",
                task,
                wait,
                self.visibility_timeout,
            )
        return True
