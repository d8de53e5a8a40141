"""The jobpilot app with a fast schedule, for ``celery -A tests.support.beat_app beat``.

Each entry sends ``tests.beat_probe`` with its own name as the argument to a
queue of its own (``beat.<entry>``), so a test counts an entry's runs with
LLEN. While the file named by ``BEAT_TEST_WEDGE`` exists, a publish blocks
(beat's loop with it): a wedged tick.

The task is not registered in beat, so Celery sends it with ``send_task``,
which subscribes to its result unless told not to: with the broker (also the
result backend) down, that subscription alone would hold beat's loop for 20 s
of retries. The entries ignore their results, as a periodic task usually does.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery.schedules import crontab
from celery.signals import before_task_publish

from worker import app

#: Entry name -> period in seconds.
FAST_ENTRIES = {"every-1s": 1.0, "every-2s": 2.0}
#: Never due during a test: its series exist from the start, at zero.
HOURLY = "hourly"
PROBE_TASK = "tests.beat_probe"


def entry_queue(name: str) -> str:
    return f"beat.{name}"


app.conf.beat_schedule = {
    **{
        name: {
            "task": PROBE_TASK,
            "schedule": period,
            "args": [name],
            "options": {"queue": entry_queue(name), "ignore_result": True},
        }
        for name, period in FAST_ENTRIES.items()
    },
    HOURLY: {
        "task": PROBE_TASK,
        "schedule": crontab(minute=0),
        "args": [HOURLY],
        "options": {"queue": entry_queue(HOURLY), "ignore_result": True},
    },
}
app.conf.beat_max_loop_interval = 1


def _wedge(**_: Any) -> None:
    path = os.environ.get("BEAT_TEST_WEDGE")
    while path and os.path.exists(path):
        time.sleep(0.05)


before_task_publish.connect(_wedge, weak=False, dispatch_uid="tests.beat_wedge")
