"""Beat is watched on Celery 5.7; on Celery 5.6, whose beat lacks what the monitor reads, a
beat runs unwatched and one line says so. The package imports on both (the clean Celery 5.6
venv of ``tests/packages`` imports it for real)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import celery
import pytest
from celery import Celery

from telemetry.beat.hooks import BeatHooks


def test_on_celery_5_6_a_beat_runs_unwatched_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = Celery("unit", broker="memory://", set_as_current=False)
    hooks = BeatHooks()
    hooks.apps[id(app)] = app
    monkeypatch.setattr(celery, "VERSION", celery.version_info_t(5, 6, 3, "", ""))
    monkeypatch.setattr(celery, "__version__", "5.6.3")
    # A scheduler that must not even be built
    service = SimpleNamespace(app=app)
    with caplog.at_level(logging.WARNING, "telemetry.beat"):
        assert hooks._monitor_for(service) is None
    assert [r.getMessage() for r in caplog.records] == [
        "telemetry: beat runs unwatched: watching it needs Celery 5.7 or later, "
        "and this is Celery 5.6.3"
    ]
