"""The jobpilot app's periodic work summary: its beat entry and its one query."""

from __future__ import annotations

from pathlib import Path

from telemetry.settings import read_settings
from worker.celery_app import SUMMARY_ENTRY, app, celery_config
from worker.db.bridge import forget_engines, run_async
from worker.db.schema import create_schema
from worker.routing import queue_for
from worker.settings import Settings
from worker.tasks.example import _record
from worker.tasks.summaries import summarize_records


def test_beat_sends_the_summary_every_five_minutes_and_answers_remote_control() -> None:
    config = celery_config(read_settings(Settings))
    entry = config["beat_schedule"][SUMMARY_ENTRY]
    assert entry == {"task": "records_summary", "schedule": 300.0}
    assert entry["task"] in app.tasks and queue_for(entry["task"]) == "default"
    assert config["beat_enable_remote_control"] is True


def test_the_summary_counts_records_and_the_ones_that_ran_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/summary.db"
    try:
        run_async(create_schema(url))
        assert run_async(summarize_records(url)) == {"records": 0, "ran_more_than_once": 0}
        for key in ("a", "b", "b"):  # "b" redelivered: its row ran twice
            run_async(_record(url, key, f"id-{key}", "default", "0 keys: "))
        assert run_async(summarize_records(url)) == {"records": 2, "ran_more_than_once": 1}
    finally:
        forget_engines()
