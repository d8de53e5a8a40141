"""Producer side, in any process: stamp ``x-jobpilot-published-at``, scrub argsrepr, count publishes.

The stamp is overwritten on every publish, so a retry carries its own publish
time; the worker's queue-wait histogram measures from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from telemetry.messages import PROBE_HEADER, PUBLISHED_AT_HEADER

MAX_TASK_NAMES_DEFAULT = 500
OTHER = "other"


class PublishRecorder:
    """Called on ``before_task_publish`` (``telemetry.wiring.producer``); counts at most
    ``max_task_names`` distinct names."""

    def __init__(
        self,
        count: Callable[[str, str], None] | None,
        max_task_names: int = MAX_TASK_NAMES_DEFAULT,
        *,
        keep_argsrepr: bool = False,
    ) -> None:
        self.count = count
        self.max_task_names = max_task_names
        self.keep_argsrepr = keep_argsrepr
        self._names: set[str] = set()

    def task_label(self, name: str) -> str:
        if name in self._names:
            return name
        if len(self._names) >= self.max_task_names:
            return OTHER
        self._names.add(name)
        return name

    def __call__(
        self,
        sender: Any = None,
        headers: dict[str, Any] | None = None,
        routing_key: str | None = None,
        body: Any = None,
        **_: Any,
    ) -> None:
        if headers is None:
            return
        headers[PUBLISHED_AT_HEADER] = time.time()
        if not self.keep_argsrepr and "argsrepr" in headers:
            args, kwargs = (
                body[:2] if isinstance(body, list | tuple) and len(body) >= 2 else ((), {})
            )
            headers["argsrepr"] = f"<{len(args) if isinstance(args, list | tuple) else 0} args>"
            headers["kwargsrepr"] = f"<{len(kwargs) if isinstance(kwargs, dict) else 0} kwargs>"
        if self.count is not None and not headers.get(PROBE_HEADER):
            self.count(
                routing_key or OTHER, self.task_label(str(sender or headers.get("task") or OTHER))
            )
