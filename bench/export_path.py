"""``python -m bench.export_path request|sdk --fd N --parent PID``: the export process, on one path.

``request`` runs ``telemetry.tracing.export.process`` as the worker does; ``sdk`` makes it
take the SDK path (``SdkSink``) with the same OTLP/HTTP exporter, for ``bench.export``.
"""

from __future__ import annotations

import sys
from typing import Any

from telemetry.tracing.export import process as export_process


def _no_request_sink(cls: Any, exporter: Any, state: Any) -> None:
    return None


if __name__ == "__main__":
    path = sys.argv.pop(1)
    if path not in ("request", "sdk"):
        raise SystemExit("usage: python -m bench.export_path request|sdk --fd N --parent PID")
    if path == "sdk":
        export_process.RequestSink.of = classmethod(_no_request_sink)  # type: ignore[method-assign,assignment]
    raise SystemExit(export_process.main(sys.argv[1:]))
