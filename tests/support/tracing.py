"""Helpers for tests that trace a real worker into the OTLP receiver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.worker_process import ROOT


def traced_env(worker_env: dict[str, str], receiver: OtlpReceiver) -> dict[str, str]:
    """A worker (or producer) environment exporting to ``receiver`` every 100 ms."""
    return {
        **worker_env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def run_as_producer(
    env: dict[str, str], code: str, *, python: str = sys.executable, cwd: Path = ROOT
) -> str:
    """Run ``code`` in a separate process of ``python`` with only ``env``; its stdout, stripped."""
    done = subprocess.run(
        [python, "-c", code],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def publish_from_a_producer(
    env: dict[str, str],
    task: str,
    args: list[object],
    kwargs: dict[str, object] | None = None,
) -> str:
    """Publish from a separate process that called telemetry.install(app); returns the task id."""
    return run_as_producer(
        env,
        "import sys, telemetry\n"
        "from worker.celery_app import app\n"
        "telemetry.install(app)\n"
        f"print(app.send_task({task!r}, args={args!r}, kwargs={kwargs or {}!r}).id)\n",
    )
