"""Another team's app whose beat runs on RedBeat: ``celery -A tests.support.stocktake beat``.

It never imports ``worker``; its only link to this project is ``telemetry.install(app)``.
Its schedule lives in Redis under ``STOCKTAKE_REDBEAT_PREFIX``; beats of it take
RedBeat's lock, so a second one waits as a standby (lock timeout: five max
intervals, 5 s here).
"""

from __future__ import annotations

import os

from celery import Celery

import telemetry

BROKER_URL = os.environ.get("STOCKTAKE_BROKER_URL", "redis://localhost:6379/0")
#: Entry name -> period in seconds; each sends ``stocktake.count`` to the queue ``stocktake``.
ENTRIES = {"count-shelves": 1.0, "count-pallets": 2.0}
QUEUE = "stocktake"

app = Celery("stocktake", broker=BROKER_URL)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    beat_scheduler="redbeat.RedBeatScheduler",
    redbeat_redis_url=BROKER_URL,
    redbeat_key_prefix=os.environ.get("STOCKTAKE_REDBEAT_PREFIX", "stocktake:"),
    beat_max_loop_interval=1,
    beat_schedule={
        name: {
            "task": "stocktake.count",
            "schedule": period,
            "args": [name],
            "options": {"queue": QUEUE},
        }
        for name, period in ENTRIES.items()
    },
)

telemetry.install(app)
