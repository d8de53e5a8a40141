"""The all_on_sdk variant: its worker's export process encodes run records with the SDK."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from telemetry.tracing.collector import CollectorState
from telemetry.tracing.export import supervisor
from telemetry.tracing.export.encoder import RecordExporter
from telemetry.tracing.export.process import SpanSink
from telemetry.tracing.export.supervisor import ExportProcess
from telemetry.tracing.providers import exporter_from_environment


def test_the_plugin_starts_the_export_process_with_the_sdk_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ExportProcess, "encoder", ExportProcess.encoder)  # put back afterwards
    assert ExportProcess.encoder == "records"
    importlib.reload(importlib.import_module("bench.sdk_encoder"))
    started: list[list[str]] = []
    monkeypatch.setattr(
        supervisor.subprocess, "Popen", lambda args, **_: started.append(list(args))
    )
    ExportProcess("INFO", "text")._spawn()
    [args] = started
    assert args[args.index("--encoder") + 1] == "sdk"


def test_only_the_records_encoder_keeps_records_to_the_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    sinks: dict[str, Any] = {}
    for records in (True, False):
        exporter = exporter_from_environment(records=records)
        assert exporter is not None
        assert isinstance(exporter, RecordExporter) is records
        sinks[str(records)] = SpanSink(exporter, CollectorState())
    assert sinks["True"].records and not sinks["False"].records
    for sink in sinks.values():
        sink.close()
