"""Queue routing by task-name prefix, as plain data.

``agent_*`` goes to ``agents``, ``briefing_*`` to ``briefings``, ``scrape_*`` to
``scraping`` and everything else to ``default``. The router is a pure function of
the task name, so it holds for ``send_task`` from a process that never imported
the task module, and it can be tested without a broker.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Exchange, Queue

DEFAULT_QUEUE = "default"

#: (name prefix, queue), first match wins.
PREFIX_ROUTES: tuple[tuple[str, str], ...] = (
    ("agent_", "agents"),
    ("briefing_", "briefings"),
    ("scrape_", "scraping"),
)

QUEUE_NAMES: tuple[str, ...] = (*(queue for _, queue in PREFIX_ROUTES), DEFAULT_QUEUE)


def queue_for(task_name: str) -> str:
    """The queue a task of this name is routed to.

    Tasks may live in a module (``worker.tasks.agents.agent_plan``); the prefix
    applies to the last dotted component.
    """
    short = task_name.rsplit(".", 1)[-1]
    for prefix, queue in PREFIX_ROUTES:
        if short.startswith(prefix):
            return queue
    return DEFAULT_QUEUE


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, str]:
    """Celery router (``task_routes``): the signature Celery calls routers with."""
    return {"queue": queue_for(name)}


def declared_queues() -> tuple[Queue, ...]:
    """The four queues, each on a direct exchange of its own name."""
    return tuple(
        Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUE_NAMES
    )
