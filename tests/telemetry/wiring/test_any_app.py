"""Another team's app gets the whole telemetry from ``telemetry.install(app)`` alone.

The app (``tests.support.inventory``) is a module of its own, with its own queues
and routes, and never imports ``worker``. A real prefork worker of it runs
against the real Redis and exports to a real OTLP/HTTP receiver.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.support.inventory_worker import APP, check_the_whole_telemetry
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.worker_process import ROOT, WorkerProcess

pytestmark = pytest.mark.integration


def test_another_apps_worker_gets_metrics_readiness_depth_exemplars_and_traces(
    start_worker: Callable[..., WorkerProcess], receiver: OtlpReceiver, redis_client: object
) -> None:
    """Given the inventory app's producer publishing orders and invoices, and its worker
    consuming orders only, then the worker serves exact per-queue counts with exemplars,
    a ready /readyz from a real health round trip, the waiting invoices' depth and age,
    and run spans parented by the producer's spans, named after the app."""
    check_the_whole_telemetry(start_worker, receiver)


def test_the_app_module_never_imports_the_jobpilot_worker() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, {APP}; print('worker' in sys.modules)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
