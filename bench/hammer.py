"""Scrapes /metrics at a fixed rate from a thread, counting failures: the "hammered" variant."""

from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass, field


@dataclass
class Hammer:
    url: str
    per_second: float
    scrapes: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-hammer", daemon=True)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        interval = 1.0 / self.per_second
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    response.read()
                    if response.status != 200:
                        raise OSError(f"status {response.status}")
            except OSError as exc:
                self.failures += 1
                if len(self.errors) < 5:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            self.scrapes += 1
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
