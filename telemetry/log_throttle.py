"""When a repeated warning is due: at most once per interval, across forked processes too.

    throttle = LogThrottle()            # before the pool forks, to share it
    if throttle.due():
        logger.warning("span export failed ...")

The time of the last line lives in shared memory that processes forked after
construction inherit, so pool processes (even ones recycled after every task)
log once per interval between them. A throttle made in one process is simply
that process's own. The clock is ``CLOCK_MONOTONIC``, which is system-wide on
Linux, so forked processes compare like with like. Reads and writes are
unlocked: two processes may both log in the same instant, never more.
"""

from __future__ import annotations

import math
import multiprocessing
import time

LOG_INTERVAL_SECONDS = 60.0


class LogThrottle:
    def __init__(self, interval: float = LOG_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._last = multiprocessing.Value("d", -math.inf, lock=False)

    def due(self) -> bool:
        """True (and the interval restarts) when the last line is at least ``interval`` old."""
        now = time.monotonic()
        if now - self._last.value < self.interval:
            return False
        self._last.value = now
        return True
