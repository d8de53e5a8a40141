"""Database spans need the ``sqlalchemy`` extra; without it, the app's engine hook is left alone."""

from __future__ import annotations

import logging

import pytest

from telemetry.extensions import Extensions
from telemetry.tracing import client_spans


@pytest.fixture
def fresh_client_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_spans, "_installed_for", [])


def test_without_the_sqlalchemy_extra_the_engine_hook_is_left_alone(
    fresh_client_spans: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given an install without jobpilot-telemetry[sqlalchemy], when an app asks for database
    spans, then no hook is registered (its first engine must not fail) and one warning says why."""
    registered: list[object] = []
    monkeypatch.setattr(
        client_spans,
        "find_spec",
        lambda name: None if name == "opentelemetry.instrumentation.sqlalchemy" else object(),
    )
    with caplog.at_level(logging.WARNING, "telemetry.tracing.client_spans"):
        client_spans.install_client_spans(
            object(),  # type: ignore[arg-type]
            Extensions(before_first_engine=registered.append),
        )
    assert registered == []
    assert [r.getMessage() for r in caplog.records] == [
        "telemetry: no database spans: opentelemetry.instrumentation.sqlalchemy is not "
        "installed (pip install 'jobpilot-telemetry[sqlalchemy]')"
    ]


def test_with_the_sqlalchemy_extra_the_engine_hook_is_registered(fresh_client_spans: None) -> None:
    registered: list[object] = []
    client_spans.install_client_spans(
        object(),  # type: ignore[arg-type]
        Extensions(before_first_engine=registered.append),
    )
    assert len(registered) == 1
