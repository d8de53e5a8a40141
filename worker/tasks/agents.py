"""Agent runs: each step is a task; progress is published for live viewers.

Events go out on Redis pub/sub, one channel per run
(``<BROKER_KEY_PREFIX>jobpilot:agent-run:<run_id>``), for a WebSocket endpoint
to relay. Pub/sub is fire-and-forget: a viewer that is not subscribed misses
the event, which is why the task returns how many received it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import redis
from celery.exceptions import Reject

from worker.celery_app import app
from worker.redis_client import task_redis

CHANNEL_PATTERN = "jobpilot:agent-run:{run_id}"
MAX_RUN_ID_LENGTH = 128
_clients: dict[int, redis.Redis] = {}


def channel_for(run_id: str) -> str:
    prefix: str = app.conf.broker_transport_options.get("global_keyprefix", "")
    return prefix + CHANNEL_PATTERN.format(run_id=run_id)


def _publisher() -> redis.Redis:
    client = _clients.get(os.getpid())
    if client is None:
        client = _clients[os.getpid()] = task_redis(app)
    return client


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not run_id or len(run_id) > MAX_RUN_ID_LENGTH:
        raise Reject(
            f"bad_arguments: run_id must be a non-empty string of at most {MAX_RUN_ID_LENGTH}",
            requeue=False,
        )
    return run_id


@app.task(name="publish_agent_event")
def publish_agent_event(run_id: str, event: dict[str, Any]) -> int:
    """Publish ``event`` (a JSON object) on the run's channel; returns the receiver count."""
    _check_run_id(run_id)
    if not isinstance(event, dict):
        raise Reject("bad_arguments: event must be an object", requeue=False)
    message = json.dumps({"run_id": run_id, "event": event, "published_at": time.time()})
    receivers: int = _publisher().publish(channel_for(run_id), message)
    return receivers


@app.task(name="agent_plan_step")
def agent_plan_step(run_id: str, step: int, goal: str = "") -> dict[str, Any]:
    """Plan one step of an agent run: derive sub-goals, then announce the step."""
    _check_run_id(run_id)
    digest = hashlib.sha256(f"{run_id}:{step}:{goal}".encode()).hexdigest()
    # Simulated planning: a few rounds of hashing stand in for model calls.
    for _ in range(200):
        digest = hashlib.sha256(digest.encode()).hexdigest()
    subgoals = [digest[i : i + 8] for i in range(0, 32, 8)]
    publish_agent_event(run_id, {"type": "step_planned", "step": step, "subgoals": len(subgoals)})
    return {"run_id": run_id, "step": step, "subgoals": subgoals}
