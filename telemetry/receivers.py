"""The one way the telemetry connects to Celery's signals: (signal, handler, uid) tuples.

    RECEIVERS = ((worker_ready, _on_worker_ready, "telemetry.worker_ready"), ...)
    connect(RECEIVERS)       # idempotent: Celery keeps one receiver per dispatch uid
    disconnect(RECEIVERS)

Receivers are held strongly (``weak=False``): a bound method of an object nobody
else keeps would otherwise vanish with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: A signal, its handler and the dispatch uid it is connected under.
Receiver = tuple[Any, Callable[..., Any], str]


def connect(receivers: Iterable[Receiver]) -> None:
    for signal, handler, uid in receivers:
        signal.connect(handler, weak=False, dispatch_uid=uid)


def disconnect(receivers: Iterable[Receiver]) -> None:
    for signal, handler, uid in receivers:
        signal.disconnect(handler, dispatch_uid=uid)
