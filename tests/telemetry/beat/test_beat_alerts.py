"""Duplicate beats, a RedBeat active/standby pair and a paused beat, in a live Prometheus.

Two ``PersistentScheduler`` beats of the jobpilot app run the same schedule on
one host, each with its own schedule file; another team's app
(``tests.support.stocktake``) runs RedBeat as an active/standby pair. Prometheus
scrapes all four as the job ``celery-beat`` with the project's rules loaded.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.conftest import redis_url
from tests.support.beat_process import BeatProcess
from tests.support.prometheus import Prometheus, start_prometheus
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

STOCKTAKE = "tests.support.stocktake"
REDBEAT_PREFIX = "stocktake-test:"


def entries(beat: BeatProcess) -> set[str]:
    return {dict(key)["entry"] for key in beat.samples()["celery_beat_entry_missed_total"]}


def sent(beat: BeatProcess) -> float:
    return sum(beat.samples()["celery_beat_entry_sent_total"].values())


def redbeat_admin() -> Celery:
    """What another team's admin script holds: the app's RedBeat settings, no telemetry."""
    app = Celery("stocktake", broker=redis_url(), set_as_current=False)
    app.conf.update(redbeat_redis_url=redis_url(), redbeat_key_prefix=REDBEAT_PREFIX)
    return app


def ever_alerted(
    prometheus: Prometheus, alertname: str, instances: list[BeatProcess]
) -> list[object]:
    """Any pending or firing state of the alert for these targets over the last 5 minutes."""
    targets = "|".join(beat.target for beat in instances)
    return prometheus.query(
        f'count_over_time(ALERTS{{alertname="{alertname}", instance=~"{targets}"}}[5m])'
    )


def test_duplicates_fire_a_redbeat_pair_stays_quiet_and_a_paused_beat_is_down(
    start_beat: Callable[..., BeatProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    stocktake_env = {
        "STOCKTAKE_BROKER_URL": redis_url(),
        "STOCKTAKE_REDBEAT_PREFIX": REDBEAT_PREFIX,
    }
    # Given two beats of the jobpilot app with the same schedule, each with its own file
    twins = [start_beat(worker_env, wait=False) for _ in range(2)]
    # And another team's app on RedBeat: an active beat, then a standby
    active = start_beat(stocktake_env, app=STOCKTAKE)
    wait_until(lambda: active.value("celery_beat_active") == 1, 20, message="RedBeat active")
    standby = start_beat(stocktake_env, app=STOCKTAKE)
    for twin in twins:
        twin.wait_serving()
    prometheus = start_prometheus(
        tmp_path, {"celery-beat": [beat.target for beat in (*twins, active, standby)]}
    )
    try:
        # Then each twin counts two beats of its app, and the duplicate alert fires for both
        wait_until(
            lambda: all(twin.value("celery_beat_instances") == 2 for twin in twins),
            15,
            message="two jobpilot beats",
        )
        duplicates = wait_until(
            lambda: (
                (alerts := prometheus.firing("CeleryBeatDuplicate")) and len(alerts) == 2 and alerts
            ),
            30,
            interval=0.5,
            message="CeleryBeatDuplicate for the twins",
        )
        assert {alert["labels"]["instance"] for alert in duplicates} == {t.target for t in twins}

        # And the RedBeat pair is live, its standby inactive and not ready, one beat counted
        assert active.livez()[0] == 200
        status, body = standby.livez()
        assert status == 200 and body["state"] == "waiting" and "scheduler lock" in body["reason"]
        assert standby.value("celery_beat_active") == 0
        _, ready = wait_until(lambda: (r := standby.readyz())[0] == 503 and r, 5, message="503")
        assert ready["checks"]["scheduler"]["error"] == "waiting"
        assert active.value("celery_beat_instances") == standby.value("celery_beat_instances") == 1
        # With the same series, the standby's from RedBeat's keys
        assert entries(standby) == entries(active) >= {"count-shelves", "count-pallets"}
        assert not prometheus.firing("CeleryBeatDown")

        entries_come_and_go(active, standby)

        # When the active RedBeat is killed, the standby takes over with the same series
        before = entries(active)
        active.kill()
        wait_until(
            lambda: standby.value("celery_beat_active") == 1, 20, message="the standby takes over"
        )
        wait_until(lambda: sent(standby) >= 2, 10, message="the standby sends")
        assert entries(standby) == before
        assert standby.livez()[1]["state"] == "ticking"
        # And the duplicate alert never went off for the pair (as it did for the twins)
        assert ever_alerted(prometheus, "CeleryBeatDuplicate", [active, standby]) == []
        assert ever_alerted(prometheus, "CeleryBeatDuplicate", twins)

        # When every other beat stops, the last one still sends: beat is not down
        twins[1].stop()
        # A beat that stops deletes its own heartbeat key at once
        assert len(redis_client.keys("celery-beat:jobpilot:*")) == 1
        standby.stop()
        wait_until(
            lambda: prometheus.query('count(up{job="celery-beat"} == 1) == 1'),
            15,
            message="one beat left",
        )
        assert not prometheus.firing("CeleryBeatDown")
        # When it is paused (SIGSTOP), its scrape fails and CeleryBeatDown is raised
        twins[0].send_signal(signal.SIGSTOP)
        down = wait_until(
            lambda: prometheus.firing("CeleryBeatDown"), 20, interval=0.5, message="CeleryBeatDown"
        )
        assert down[0]["labels"]["severity"] == "critical"
    finally:
        prometheus.stop()


def entries_come_and_go(active: BeatProcess, standby: BeatProcess) -> None:
    """An entry added to RedBeat while it runs gets its series at once; removed, they go."""
    from redbeat import RedBeatSchedulerEntry

    admin = redbeat_admin()
    added = RedBeatSchedulerEntry(
        "count-aisles", "stocktake.count", 1.0, args=["count-aisles"], app=admin
    )
    added.save()
    wait_until(lambda: "count-aisles" in entries(active), 10, message="the new entry's series")
    wait_until(
        lambda: active.value(
            "celery_beat_entry_sent_total",
            entry="count-aisles",
            task="stocktake.count",
            queue="celery",
        ),
        10,
        message="the new entry sent",
    )
    added.delete()
    wait_until(lambda: "count-aisles" not in entries(active), 10, message="its series gone")
    assert sys.modules.get("tests.support.stocktake") is None  # no telemetry in this process
