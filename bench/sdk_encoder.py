"""``celery -A worker worker ... --include bench.sdk_encoder``: run records encoded by the SDK.

For the export-encoding decision (docs/benchmarks.md, "The design of tracing"):
the worker's export process runs with ``--encoder sdk``, so it rebuilds every
run record into an SDK span and encodes it with the SDK's ``encode_spans``,
instead of the contained encoder (``telemetry.tracing.export.encoder``).
Everything else is the worker's own. The drain suite's ``all_on_sdk`` variant
includes it.
"""

from __future__ import annotations

from telemetry.tracing.export.process import SDK
from telemetry.tracing.export.supervisor import ExportProcess

ExportProcess.encoder = SDK
