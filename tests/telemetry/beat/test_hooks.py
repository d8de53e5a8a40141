"""The beat hooks: installed with the app, removed to the last byte, never in a send's way.

A real ``celery.beat.Service`` loop runs in a thread here, on the in-memory
broker, so the hooks are seen end to end in a second; the Redis-backed beat
processes are in ``test_beat_process.py``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.beat import Scheduler, Service
from celery.signals import before_task_publish, celeryd_init

import telemetry
from telemetry.beat import BEAT_HOOKS
from telemetry.beat.hooks import EMBEDDED_REFUSED
from telemetry.beat.monitor import BeatMonitor
from telemetry.beat.series import EntrySeries
from tests.support.worker_process import ROOT, free_port, wait_until

PERIOD = 0.2


def connected(signal: object, uid: str) -> bool:
    return any(key[0] == uid for key, _ in signal.receivers)  # type: ignore[attr-defined]


def beat_app(name: str = "unit") -> Celery:
    app = Celery(name, broker="memory://", set_as_current=False)
    app.conf.update(
        beat_schedule={"fast": {"task": "unit.fast", "schedule": PERIOD}},
        beat_max_loop_interval=PERIOD,
    )
    return app


@pytest.fixture
def app() -> Iterator[Celery]:
    app = beat_app()
    yield app
    telemetry.uninstall(app)


@pytest.fixture
def published() -> Iterator[list[str]]:
    """The task of every message published in this process."""
    seen: list[str] = []

    def record(sender: Any = None, **_: Any) -> None:
        seen.append(str(sender))

    before_task_publish.connect(record, weak=False, dispatch_uid="tests.beat.published")
    yield seen
    before_task_publish.disconnect(record, dispatch_uid="tests.beat.published")


@pytest.fixture
def beat_env(monkeypatch: pytest.MonkeyPatch) -> int:
    port = free_port()
    monkeypatch.setenv("BEAT_METRICS_PORT", str(port))
    monkeypatch.setenv("METRICS_RENDER_INTERVAL", "0")
    monkeypatch.setenv("READINESS_INTERVAL", "0.2")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    return port


class RunningBeat:
    """``Service.start`` of ``app`` in a thread, with Celery's in-memory scheduler."""

    def __init__(self, app: Celery) -> None:
        self.service = Service(app, scheduler_cls="celery.beat:Scheduler")
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.start()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_install_wraps_celerys_functions_and_the_last_uninstall_puts_them_back(
    app: Celery,
) -> None:
    start, apply_async = vars(Service)["start"], vars(Scheduler)["apply_async"]
    other = beat_app("other")
    telemetry.install(app)
    telemetry.install(other)
    assert vars(Service)["start"] is not start and vars(Scheduler)["apply_async"] is not apply_async
    assert connected(celeryd_init, "telemetry.beat.celeryd_init")
    telemetry.uninstall(app)
    assert vars(Service)["start"] is not start  # still wrapped for the other app
    telemetry.uninstall(other)
    assert vars(Service)["start"] is start and vars(Scheduler)["apply_async"] is apply_async
    assert not connected(celeryd_init, "telemetry.beat.celeryd_init")
    assert BEAT_HOOKS.apps == {} and BEAT_HOOKS.monitors == {}


def test_a_beat_of_an_installed_app_is_watched_and_leaves_nothing_behind(
    app: Celery, beat_env: int, published: list[str]
) -> None:
    """Given a beat of an installed app sending every 0.2 s, its sends are counted
    exactly; when it stops, its tick hook, monitor and port are gone."""
    telemetry.install(app)
    beat = RunningBeat(app)
    monitor: BeatMonitor = wait_until(
        lambda: next(iter(BEAT_HOOKS.monitors.values()), None), 10, message="a monitor"
    )
    wait_until(lambda: len(published) >= 5, 10, message="five sends")
    with urllib.request.urlopen(f"http://127.0.0.1:{beat_env}/livez", timeout=5) as response:
        assert json.loads(response.read())["state"] == "ticking"
    beat.stop()
    sent = monitor.registry.get_sample_value(
        "celery_beat_entry_sent_total", {"entry": "fast", "task": "unit.fast", "queue": "celery"}
    )
    assert sent == len(published) == published.count("unit.fast")
    assert monitor.registry.get_sample_value("celery_beat_active") == 1
    assert "tick" not in vars(beat.service.scheduler) and BEAT_HOOKS.monitors == {}
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{beat_env}/livez", timeout=2)


def test_entries_added_and_removed_at_run_time_come_and_go_at_the_next_tick(
    app: Celery, beat_env: int, published: list[str]
) -> None:
    """Celery's own tick notices a changed schedule (as django-celery-beat's does): the
    series, and what the monitor keeps per entry, follow it at that tick."""
    telemetry.install(app)
    beat = RunningBeat(app)
    try:
        monitor: BeatMonitor = wait_until(
            lambda: next(iter(BEAT_HOOKS.monitors.values()), None), 10, message="a monitor"
        )
        scheduler = beat.service.scheduler
        wait_until(lambda: monitor.series.names == {"fast"}, 10, message="the first entry")
        added = scheduler.Entry(name="added", task="unit.added", schedule=PERIOD, app=app)
        scheduler.data = {**scheduler.data, "added": added}  # one atomic swap of the mapping
        wait_until(lambda: "unit.added" in published, 10, message="the added entry sent")
        assert monitor.series.names == {"fast", "added"}
        scheduler.data = {"fast": scheduler.data["fast"]}
        wait_until(lambda: monitor.series.names == {"fast"}, 10, message="the entry gone")
        missed = monitor.registry.get_sample_value(
            "celery_beat_entry_missed_total", {"entry": "added"}
        )
        assert missed is None
        # And the monitor forgets the entry it sent, so entries that come and go hold nothing
        assert monitor._sent_since_active == {"fast"}
    finally:
        beat.stop()


def test_a_failing_telemetry_never_breaks_a_send(
    app: Celery,
    beat_env: int,
    published: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the telemetry")

    monkeypatch.setattr(EntrySeries, "sent", broken)
    telemetry.install(app)
    with caplog.at_level(logging.WARNING, logger="telemetry.beat"):
        beat = RunningBeat(app)
        try:
            wait_until(lambda: len(published) >= 3, 10, message="sends despite the bug")
        finally:
            beat.stop()
    assert beat.error is None
    skipped = [r.getMessage() for r in caplog.records if "skipped a send" in r.getMessage()]
    assert skipped == ["beat telemetry skipped a send: RuntimeError"]


def test_a_beat_of_another_app_runs_celerys_own_functions(
    app: Celery, beat_env: int, published: list[str]
) -> None:
    telemetry.install(app)
    other = RunningBeat(beat_app("other"))
    try:
        wait_until(lambda: len(published) >= 2, 10, message="the other app's sends")
        assert BEAT_HOOKS.monitors == {}
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{beat_env}/metrics", timeout=2)
    finally:
        other.stop()


def test_a_bad_variable_stops_beat_with_one_line(
    app: Celery, beat_env: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEAT_MAX_ENTRIES", "0")
    telemetry.install(app)
    beat = RunningBeat(app)
    beat.thread.join(10)
    assert isinstance(beat.error, SystemExit)
    assert str(beat.error) == "settings: BEAT_MAX_ENTRIES: Input should be greater than 0"


def test_celery_worker_dash_b_is_refused_with_one_line() -> None:
    """``celery worker -B`` would run beat where nothing watches it: refused before it starts."""
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tests.support.inventory", "worker", "-B"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == EMBEDDED_REFUSED.format(app="inventory")
