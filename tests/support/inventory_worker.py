"""Running the inventory app (``tests.support.inventory``) in tests: its worker and its env.

Kept apart from the app module, which installs the telemetry when imported: the test
process never imports it.
"""

from __future__ import annotations

import sys

from tests.conftest import redis_url
from tests.support.otlp_receiver import OtlpReceiver

APP = "tests.support.inventory"
WORKER = (sys.executable, "-m", "celery", "-A", APP, "worker", "-c", "2", "-P", "prefork")


def inventory_env(receiver: OtlpReceiver | None) -> dict[str, str]:
    """The inventory app on the test Redis, tracing into ``receiver`` (no tracing for None),
    probing every second."""
    tracing = (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        if receiver is not None
        else {"OTEL_SDK_DISABLED": "true"}
    )
    return {
        "INVENTORY_BROKER_URL": redis_url(),
        **tracing,
        "OTEL_SERVICE_NAME": "inventory",
        "READINESS_INTERVAL": "1",
        "QUEUE_POLL_INTERVAL": "0.5",
        "METRICS_RENDER_INTERVAL": "0",
    }
