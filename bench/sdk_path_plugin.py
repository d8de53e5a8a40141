"""``celery -A worker worker ... --include bench.sdk_path_plugin``: the span hop on the SDK's path.

For the export-path decision (docs/benchmarks.md, "The export path"). Pool
processes send every span as a JSON row instead of pre-encoded OTLP protobuf,
and the export process runs as ``python -m bench.export_path sdk``: it hands the
decoded spans to the SDK's ``BatchSpanProcessor`` and ``OTLPSpanExporter``.
Everything else (the lean ``run`` span, the relay, the export process and its
backoff) is the worker's own.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from telemetry.tracing.export import pieces as span_pieces
from telemetry.tracing.export import relay as span_relay

#: The export process of this variant; ``bench.drain.role`` knows it by this name.
SDK_EXPORT_MODULE = "bench.export_path"


def _never_plain(self: span_pieces.SpanPieces, fields: Sequence[Any]) -> bytes | None:
    return None


def _spawn_sdk_path(self: span_relay.ExportProcess) -> subprocess.Popen[bytes]:
    fd = self._receiver.fileno()
    return subprocess.Popen(
        [
            *(sys.executable, "-m", SDK_EXPORT_MODULE, "sdk", "--fd", str(fd)),
            *("--parent", str(self._main_pid)),
            *("--log-level", self.log_level, "--log-format", self.log_format),
        ],
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
    )


span_pieces.SpanPieces.plain = _never_plain  # type: ignore[method-assign]
span_relay.ExportProcess._spawn = _spawn_sdk_path  # type: ignore[method-assign]
