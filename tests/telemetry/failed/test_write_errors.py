"""A write the broker refuses: logged once, counted across forked pool processes, never raised."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator

import pytest
from celery import Celery
from prometheus_client import CollectorRegistry, generate_latest

from telemetry.failed.exhausted import ExhaustedCapture
from telemetry.failed.records import EXHAUSTED_REASON, FailedRecord, Kind
from telemetry.settings import TelemetrySettings, read_settings
from tests.support.worker_process import free_port


def record() -> FailedRecord:
    return FailedRecord.new(
        Kind.EXHAUSTED, queue="q", task="t", task_id="i", reason=EXHAUSTED_REASON, raw=""
    )


@pytest.fixture
def capture() -> Iterator[tuple[ExhaustedCapture, CollectorRegistry]]:
    # Given the capture of an app whose broker refuses connections
    app = Celery("write-errors", broker=f"redis://127.0.0.1:{free_port()}/0", set_as_current=False)
    registry = CollectorRegistry()
    captured = ExhaustedCapture(
        app, read_settings(TelemetrySettings), registry, lambda q, t: (q or "", t or "")
    )
    captured.start(None)
    yield captured, registry
    captured.stop()
    app.close()


def errors(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("celery_exhausted_write_errors_total")
    assert value is not None
    return value


def test_a_refused_write_is_logged_once_and_counted_by_every_process(
    capture: tuple[ExhaustedCapture, CollectorRegistry], caplog: pytest.LogCaptureFixture
) -> None:
    captured, registry = capture
    caplog.set_level(logging.ERROR, "telemetry.failed")
    # When two writes are refused in this process and one in a forked pool process
    assert captured.write(record()) is False
    assert captured.write(record()) is False
    child = multiprocessing.get_context("fork").Process(target=captured.write, args=(record(),))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    # Then all three are counted where the worker serves its metrics, and logged once
    assert errors(registry) == 3
    assert caplog.text.count("could not keep exhausted task") == 1
    assert b"celery_exhausted_write_errors_total 3.0" in generate_latest(registry)
