"""``health_check_task``: proves a pool process can take and finish work."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Task

from worker.celery_app import app


@app.task(bind=True, name="health_check_task", ignore_result=False)
def health_check_task(self: Task) -> dict[str, Any]:
    return {"hostname": self.request.hostname, "pid": os.getpid(), "time": time.time()}
