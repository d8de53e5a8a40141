"""Routing by name prefix: pure unit tests, then the real broker."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from tests.conftest import redis_url
from tests.support.worker_process import ROOT
from worker import routing


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("agent_plan_step", "agents"),
        ("briefing_compile", "briefings"),
        ("scrape_page", "scraping"),
        ("example_task", "default"),
        ("worker.tasks.agents.agent_plan_step", "agents"),
        ("agentless", "default"),
        ("my_agent_thing", "default"),
        ("", "default"),
    ],
)
def test_queue_for_uses_the_name_prefix(task_name: str, queue: str) -> None:
    assert routing.queue_for(task_name) == queue


def test_router_has_celerys_signature() -> None:
    assert routing.route_task("scrape_x", (), {}, {}) == {"queue": "scraping"}


def test_all_four_queues_are_declared_on_their_own_exchange() -> None:
    queues = {q.name: q for q in routing.declared_queues()}
    assert set(queues) == {"agents", "briefings", "scraping", "default"}
    assert all(q.exchange.name == name and q.routing_key == name for name, q in queues.items())


def test_the_app_is_configured_with_the_router() -> None:
    from worker.celery_app import app

    assert routing.route_task in app.conf.task_routes
    assert app.conf.task_default_queue == "default"


@pytest.mark.integration
def test_send_task_from_a_process_without_the_task_modules(redis_client: redis.Redis) -> None:
    # Given a process that imports the app but never a task module
    code = """
import sys
from worker.celery_app import app
for name in ("agent_one", "briefing_two", "scrape_three", "anything_else"):
    app.send_task(name)
assert not any(m.startswith("worker.tasks") for m in sys.modules), "task modules were imported"
print("sent")
"""
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url()}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.stdout.strip() == "sent", done.stderr
    # Then each message waits in the queue its prefix names
    assert [redis_client.llen(q) for q in ("agents", "briefings", "scraping", "default")] == [
        1,
        1,
        1,
        1,
    ]
