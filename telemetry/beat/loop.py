"""Beat's loop as the telemetry sees it: Celery's own tick stamp, and a hook around each tick.

    loop = BeatLoop(service, scheduler, timeout, after_tick)
    loop.hook()            # before Service.start's loop runs
    loop.phase()           # waiting | connecting | starting | ticking | stale
    loop.unhook()

Every scheduler goes through ``Service.start``'s loop, which calls
``scheduler.tick()`` and then stamps ``Service._last_tick`` (monotonic), the
stamp Celery's own stale check (``BeatPidbox.is_stale``) reads. The hook wraps
that call on the service's scheduler instance, whatever its class (RedBeat
replaces ``tick``), so the telemetry knows when a tick starts and ends.

Reads of Celery's private ``_last_tick`` and of the scheduler's lazily built
``connection`` and ``producer`` are kept to this module; ``celery`` is pinned
to 5.7 in ``pyproject.toml``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from telemetry.log_throttle import LogThrottle

logger = logging.getLogger("telemetry.beat")

WAITING, CONNECTING, STARTING, TICKING, STALE = (
    "waiting",
    "connecting",
    "starting",
    "ticking",
    "stale",
)


class BeatLoop:
    """Written by beat's thread; read by the HTTP, probe and heartbeat threads (plain attributes)."""

    def __init__(
        self,
        service: Any,
        scheduler: Any,
        timeout: float,
        after_tick: Callable[[float], None],
    ) -> None:
        """``timeout``: the tick age past which the loop is stale; 0 never is (Celery's rule)."""
        self.service = service
        self.scheduler = scheduler
        self.timeout = timeout
        self.after_tick = after_tick
        self.started_at = time.time()
        #: When the first tick started: this beat is active from then on (Unix seconds).
        self.active_since: float | None = None
        #: When the tick in progress started, or None between ticks.
        self.tick_started: float | None = None
        self.ticked = False
        self._hook: Callable[..., Any] | None = None
        self._log = LogThrottle()

    # beat's thread ----------------------------------------------------------------
    def hook(self) -> None:
        tick = self.scheduler.tick

        def hooked_tick(*args: Any, **kwargs: Any) -> Any:
            now = time.time()
            self.tick_started = now
            if self.active_since is None:
                self.active_since = now
            try:
                return tick(*args, **kwargs)
            finally:
                self.tick_started = None
                self.ticked = True
                try:
                    self.after_tick(time.time())
                except Exception as exc:  # telemetry never breaks beat
                    if self._log.due():
                        logger.warning("beat telemetry: after a tick: %s", type(exc).__name__)

        self._hook = hooked_tick
        self.scheduler.tick = hooked_tick

    def unhook(self) -> None:
        if self._hook is not None and vars(self.scheduler).get("tick") is self._hook:
            del self.scheduler.tick
        self._hook = None

    # any thread ---------------------------------------------------------------------
    def tick_age(self) -> float | None:
        """Seconds since the loop last turned, from Celery's own stamp; None before the loop."""
        last: float | None = getattr(self.service, "_last_tick", None)
        return None if last is None else time.monotonic() - last

    def tick_timestamp(self) -> float:
        """The loop's last turn in Unix seconds; before the loop, when beat started."""
        age = self.tick_age()
        return self.started_at if age is None else time.time() - age

    @property
    def active(self) -> bool:
        """It sends: its loop has completed a tick (a standby never gets there)."""
        return self.ticked

    def connecting(self) -> bool:
        """A tick is waiting for the scheduler's first broker connection.

        The scheduler builds ``connection`` and then ``producer`` lazily, at its first
        send; until the producer exists, the connection retries with kombu's backoff.
        """
        if self.tick_started is None:
            return False
        state = vars(self.scheduler)
        connection = state.get("connection")
        return "producer" not in state and connection is not None and not connection.connected

    def phase(self) -> str:
        age = self.tick_age()
        if age is None:
            return WAITING  # in beat_init: a standby waiting for its scheduler lock
        if self.connecting():
            return CONNECTING
        if self.timeout and age > self.timeout:
            return STALE
        return TICKING if self.ticked else STARTING
