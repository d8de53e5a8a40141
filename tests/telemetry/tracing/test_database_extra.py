"""Database spans need the ``sqlalchemy`` extra; without it, the app's engine hook is left alone."""

from __future__ import annotations

import logging

import pytest

from telemetry.extensions import Extensions
from telemetry.tracing import client_spans
from telemetry.tracing.client_spans import ClientSpans


def test_without_the_sqlalchemy_extra_the_engine_hook_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given an install without jobpilot-telemetry[sqlalchemy], when an app asks for database
    spans, then no hook is registered (its first engine must not fail) and one warning says why."""
    registered: list[object] = []
    monkeypatch.setattr(
        client_spans,
        "find_spec",
        lambda name: None if name == "opentelemetry.instrumentation.sqlalchemy" else object(),
    )
    spans = ClientSpans(object(), Extensions(before_first_engine=registered.append))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "telemetry.tracing.client_spans"):
        spans.instrument()
    assert registered == []
    assert [r.getMessage() for r in caplog.records] == [
        "telemetry: no database spans: opentelemetry.instrumentation.sqlalchemy is not "
        "installed (pip install 'jobpilot-telemetry[sqlalchemy]')"
    ]
    spans.uninstrument()


def test_with_the_sqlalchemy_extra_the_engine_hook_is_registered() -> None:
    registered: list[object] = []
    spans = ClientSpans(object(), Extensions(before_first_engine=registered.append))  # type: ignore[arg-type]
    spans.instrument()
    assert len(registered) == 1
    spans.uninstrument()
