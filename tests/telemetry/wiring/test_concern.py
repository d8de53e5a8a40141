"""Concerns are called in order and undone in reverse; one that fails never strands the others."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from telemetry.wiring.concern import Concern, Concerns

APP = Celery("concerns", broker="memory://", set_as_current=False)


class Recorder(Concern):
    """Writes each hook it hears to a shared journal; raises on the hooks it is told to."""

    def __init__(self, name: str, journal: list[str], fails: tuple[str, ...] = ()) -> None:
        self.name, self.journal, self.fails = name, journal, fails

    def _hear(self, hook: str) -> None:
        self.journal.append(f"{self.name}.{hook}")
        if hook in self.fails:
            raise (
                SystemExit(f"{self.name} cannot {hook}") if hook == "start" else RuntimeError(hook)
            )

    def install(self, app: Celery) -> None:
        self._hear("install")

    def uninstall(self, app: Celery) -> None:
        self._hear("uninstall")

    def start(self, worker: Any) -> None:
        self._hear("start")

    def ready(self, consumer: Any) -> None:
        self._hear("ready")

    def shutting_down(self) -> None:
        self._hear("shutting_down")

    def stop(self) -> None:
        self._hear("stop")

    def pool_process(self) -> None:
        self._hear("pool_process")


def concerns(journal: list[str], **fails: tuple[str, ...]) -> Concerns:
    return Concerns(Recorder(name, journal, fails.get(name, ())) for name in ("a", "b", "c"))


def test_hooks_run_in_order_and_stop_and_uninstall_in_reverse() -> None:
    journal: list[str] = []
    each = concerns(journal)
    each.install(APP)
    each.start(None)
    each.ready(None)
    each.shutting_down()
    each.stop()
    each.uninstall(APP)
    assert journal == [
        *("a.install", "b.install", "c.install"),
        *("a.start", "b.start", "c.start"),
        *("a.ready", "b.ready", "c.ready"),
        *("a.shutting_down", "b.shutting_down", "c.shutting_down"),
        *("c.stop", "b.stop", "a.stop"),
        *("c.uninstall", "b.uninstall", "a.uninstall"),
    ]


def test_a_start_that_exits_stops_the_concerns_started_before_it() -> None:
    """Given b cannot start (a taken port, say), then a is stopped and the exit goes on."""
    journal: list[str] = []
    with pytest.raises(SystemExit, match="b cannot start"):
        concerns(journal, b=("start",)).start(None)
    assert journal == ["a.start", "b.start", "a.stop"]


def test_an_install_that_raises_leaves_nothing_installed() -> None:
    journal: list[str] = []
    with pytest.raises(RuntimeError):
        concerns(journal, c=("install",)).install(APP)
    assert journal == ["a.install", "b.install", "c.install", "b.uninstall", "a.uninstall"]


def test_a_stop_or_uninstall_that_fails_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal: list[str] = []
    each = concerns(journal, b=("stop", "uninstall"))
    each.stop()
    each.uninstall(APP)
    assert journal == ["c.stop", "b.stop", "a.stop", "c.uninstall", "b.uninstall", "a.uninstall"]
    assert [r.getMessage() for r in caplog.records if r.name == "telemetry.wiring"] == [
        "telemetry: Recorder.stop failed",
        "telemetry: Recorder.uninstall failed",
    ]


def test_concerns_nest() -> None:
    """The worker's concerns hold the app's: the app's start first and stop last."""
    journal: list[str] = []
    app_side = Concerns([Recorder("app", journal)])
    worker = Concerns([app_side, Recorder("worker", journal)])
    worker.start(None)
    worker.pool_process()
    worker.stop()
    assert journal == [
        *("app.start", "worker.start"),
        *("app.pool_process", "worker.pool_process"),
        *("worker.stop", "app.stop"),
    ]
