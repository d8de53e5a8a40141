"""``health_check_task``: proves a pool process can take and finish work.

The readiness probe runs it (``telemetry.readiness``); the jobpilot worker keeps its own
so that ``app.send_task("health_check_task").get()`` returns a result, which the tests use.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Task

from telemetry.messages import HEALTH_TASK
from worker.celery_app import app


@app.task(bind=True, name=HEALTH_TASK, ignore_result=False)
def health_check_task(self: Task) -> dict[str, Any]:
    return {"hostname": self.request.hostname, "pid": os.getpid(), "time": time.time()}
