"""Flower 2.x on the jobpilot app: its API reads the broker (queue lengths) and the workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.worker_process import ROOT, WorkerProcess, free_port, wait_until
from tests.telemetry.metrics.test_queues import stamped

pytestmark = pytest.mark.integration


@pytest.fixture
def flower(log_dir: Path) -> Iterator[str]:
    port = free_port()
    log = (log_dir / "flower.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        cwd=ROOT,
        env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: get(url + "/healthcheck") is not None, 30, interval=0.2, message="flower"
        )
        yield url
    finally:
        process.terminate()
        process.wait(10)


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
            return json.loads(body) if body.strip().startswith((b"{", b"[")) else body
    except (urllib.error.URLError, OSError):
        return None


def test_flower_reads_queue_lengths_and_workers(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    flower: str,
) -> None:
    # Given a worker on `default` only, and three messages waiting on `briefings`
    worker = start_worker(worker_env, queues="default")
    for _ in range(3):
        redis_client.lpush(
            "briefings", stamped(time.time(), task="briefing_compile", queue="briefings")
        )
    # Then Flower's queue API reads the broker through the app's URL: every queue, with its length
    lengths = wait_until(
        lambda: (r := get(flower + "/api/queues/length")) and r.get("active_queues"),
        30,
        interval=0.5,
        message="queue lengths",
    )
    assert {q["name"]: q["messages"] for q in lengths} == {
        "agents": 0,
        "briefings": 3,
        "scraping": 0,
        "default": 0,
    }
    # And its worker API finds the worker
    workers = wait_until(
        lambda: (r := get(flower + "/api/workers?refresh=true")) and worker.hostname in r and r,
        30,
        interval=0.5,
        message="the worker in Flower",
    )
    assert worker.hostname in workers
