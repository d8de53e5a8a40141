"""Beat processes for the beat tests: every one is stopped afterwards, its log shown on failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.beat_process import BeatProcess

BEAT_LOG_TAIL = 4000


@pytest.fixture
def start_beat(
    log_dir: Path, redis_client: redis.Redis, request: pytest.FixtureRequest
) -> Iterator[Callable[..., BeatProcess]]:
    started: list[BeatProcess] = []

    def start(env: dict[str, str], *, wait: bool = True, **kwargs: object) -> BeatProcess:
        beat = BeatProcess(env, log_dir, **kwargs)  # type: ignore[arg-type]
        started.append(beat)
        return beat.start(wait=wait)

    yield start
    for beat in started:
        beat.stop(timeout=10)
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for beat in started:
            print(f"--- {beat.name} exited {beat.process and beat.process.returncode}:")
            print(beat.log()[-BEAT_LOG_TAIL:])
