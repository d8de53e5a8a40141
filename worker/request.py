"""The worker's Request: dead letters (``telemetry.deadletters.request``) plus the delivery
announcements of ``telemetry.delivery.request``.

Every jobpilot task uses it (``worker.base_task``). ``telemetry.install`` keeps
it as it is, setting only ``TRACE_TASK_ARGS`` on it when the worker starts.
"""

from __future__ import annotations

from telemetry.deadletters.request import DeadLetteringRequest
from telemetry.delivery.request import TelemetryRequest


class JobpilotRequest(TelemetryRequest, DeadLetteringRequest):
    """A failure is dead-lettered (when it must be) before its outcome is announced."""
