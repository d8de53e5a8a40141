"""The worker's command line, built in one place for the demo, the benchmark and the tests."""

from __future__ import annotations

import sys
from collections.abc import Iterable


def worker_command(queues: Iterable[str], concurrency: int = 2, *extra: str) -> list[str]:
    """argv of ``celery -A worker worker -Q <queues> -c <n> -P prefork``, run by this interpreter."""
    return [
        *(sys.executable, "-m", "celery", "-A", "worker", "worker"),
        *("-Q", ",".join(queues), "-c", str(concurrency), "-P", "prefork"),
        *extra,
    ]
