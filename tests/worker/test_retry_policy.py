"""Celery's default retry delay is capped; a task's own delay is kept, and refused past the limit."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from celery import Celery

from tests.conftest import redis_url
from tests.support.worker_process import ROOT
from worker.celery_app import celery_config
from worker.settings import Settings, SettingsError, load_settings
from worker.startup import check_retry_delays


@pytest.fixture
def configured() -> Iterator[tuple[Celery, Settings]]:
    settings = load_settings()
    app = Celery("retry-policy", set_as_current=False)
    app.conf.update(celery_config(settings))
    yield app, settings
    app.close()


def test_only_celerys_default_is_capped(configured: tuple[Celery, Settings]) -> None:
    app, settings = configured

    @app.task(name="default_delay")
    def default_delay() -> None: ...

    @app.task(name="own_delay", autoretry_for=(ValueError,), max_retries=2, default_retry_delay=0)
    def own_delay() -> None: ...

    # Then the task without a delay of its own gets Celery's 180 s, capped at the limit
    assert app.tasks["default_delay"].default_retry_delay == min(180, settings.max_retry_countdown)
    # And the task that declares 0 keeps it: its autoretry logs "Retry in 0s"
    assert app.tasks["own_delay"].default_retry_delay == 0
    check_retry_delays(app, settings)


def test_a_task_declaring_more_than_the_limit_is_refused_at_start(
    configured: tuple[Celery, Settings],
) -> None:
    app, settings = configured

    @app.task(name="slow", default_retry_delay=900)
    def slow() -> None: ...

    assert app.tasks["slow"].default_retry_delay == 900
    with pytest.raises(
        SettingsError, match="task slow has default_retry_delay 900s above the limit of 600s"
    ):
        check_retry_delays(app, settings)


def test_the_real_worker_refuses_to_start_with_it() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "-Q",
            "default",
            "--include",
            "tests.support.slow_retry",
        ],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Traceback" not in output  # one line, after Celery's own start-up warnings
    assert output.strip().splitlines()[-1] == (
        "settings: MAX_RETRY_COUNTDOWN: task tests.slow_retry has default_retry_delay 900s "
        "above the limit of 600s"
    ), output
