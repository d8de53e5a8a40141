"""A real ``celery beat`` of the jobpilot app on a real Redis, with entries every 1 and 2 s.

Every count is checked against the runs that reached the queues: each entry
sends to a queue of its own (``tests.support.beat_app``), and each message
carries its publish time (``x-jobpilot-published-at``).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import redis

from telemetry.messages import PUBLISHED_AT_HEADER
from tests.support.beat_app import FAST_ENTRIES, HOURLY, PROBE_TASK, entry_queue
from tests.support.beat_process import BeatProcess
from tests.support.private_redis import PrivateRedis
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.integration

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]
#: How far apart Celery's last-run stamp and our publish stamp may be, per run.
STAMP_SLACK_SECONDS = 0.015


def sent_key(entry: str) -> tuple[tuple[str, str], ...]:
    return (("entry", entry), ("queue", entry_queue(entry)), ("task", PROBE_TASK))


def entry_key(entry: str) -> tuple[tuple[str, str], ...]:
    return (("entry", entry),)


def published(client: redis.Redis, entry: str) -> list[float]:
    """The publish times of the entry's runs in its queue, oldest first."""
    raw = client.lrange(entry_queue(entry), 0, -1)
    return sorted(float(json.loads(item)["headers"][PUBLISHED_AT_HEADER]) for item in raw)


def settled(
    beat: BeatProcess, client: redis.Redis, entries: Iterable[str]
) -> tuple[Samples, dict[str, list[float]]]:
    """A scrape and the queues with no send in between: the sent counts agree before and after."""
    names = list(entries)

    def read() -> tuple[Samples, dict[str, list[float]]] | None:
        before = beat.samples()
        queued = {name: published(client, name) for name in names}
        after = beat.samples()
        # A run is in its queue before beat's counters move: they must agree with it
        counts = [
            [s["celery_beat_entry_sent_total"].get(sent_key(n)) for n in names]
            + [s["celery_beat_entry_lateness_seconds_count"].get(entry_key(n)) for n in names]
            for s in (before, after)
        ]
        in_queues = [len(queued[n]) for n in names]
        return (before, queued) if counts[0] == counts[1] == in_queues * 2 else None

    return wait_until(read, 10, interval=0.02, message="a scrape between two sends")


def counter(beat: BeatProcess, family: str, entry: str) -> float:
    """The entry's ``celery_beat_entry_<family>_total``, whatever its other labels."""
    samples = beat.samples()[f"celery_beat_entry_{family}_total"]
    return sum(value for key, value in samples.items() if ("entry", entry) in key)


def test_sent_counts_and_lateness_match_the_runs_that_reached_the_queues(
    start_beat: Callable[..., BeatProcess], worker_env: dict[str, str], redis_client: redis.Redis
) -> None:
    # Given a new beat of the jobpilot app
    beat = start_beat(worker_env)
    # Then its first answer has every entry's series, the hourly one's at zero
    first = beat.samples()
    assert {dict(key)["entry"] for key in first["celery_beat_entry_sent_total"]} == {
        *FAST_ENTRIES,
        HOURLY,
    }
    assert first["celery_beat_entry_sent_total"][sent_key(HOURLY)] == 0
    assert first["celery_beat_entry_lateness_seconds_count"][entry_key(HOURLY)] == 0
    assert first["celery_beat_entry_interval_seconds"][entry_key(HOURLY)] == 3600

    # When its first runs are in, and a few periods more
    wait_until(lambda: counter(beat, "sent", "every-2s") >= 1, 10, message="a first run")
    early, early_queued = settled(beat, redis_client, FAST_ENTRIES)
    wait_until(lambda: counter(beat, "sent", "every-2s") >= 4, 15, message="three runs more")
    late, queued = settled(beat, redis_client, FAST_ENTRIES)

    # Then each entry's sent count is the number of its runs in its queue
    for name, period in FAST_ENTRIES.items():
        assert late["celery_beat_entry_sent_total"][sent_key(name)] == len(queued[name])
        # And the lateness observed since is what the publish times say: each run is due
        # one period after the one before it
        k, n = len(early_queued[name]), len(queued[name])
        times = queued[name]
        observed = (
            late["celery_beat_entry_lateness_seconds_sum"][entry_key(name)]
            - early["celery_beat_entry_lateness_seconds_sum"][entry_key(name)]
        )
        expected = (times[n - 1] - times[k - 1]) - (n - k) * period
        assert observed == pytest.approx(expected, abs=STAMP_SLACK_SECONDS * (n - k))
        count = "celery_beat_entry_lateness_seconds_count"
        assert late[count][entry_key(name)] - early[count][entry_key(name)] == n - k
        assert late["celery_beat_entry_interval_seconds"][entry_key(name)] == period
        assert late["celery_beat_entry_next_due_timestamp_seconds"][entry_key(name)] > times[-1]
    assert redis_client.llen(entry_queue(HOURLY)) == 0
    for family in ("catchup", "missed", "send_errors"):
        assert all(v == 0 for v in late[f"celery_beat_entry_{family}_total"].values())

    # And the beat is active, ticking, alone, live and ready
    assert late["celery_beat_active"][()] == 1
    assert late["celery_beat_instances"][()] == 1
    assert time.time() - late["celery_beat_tick_timestamp_seconds"][()] < 3
    assert late["celery_beat_liveness_timeout_seconds"][()] == 60  # Celery's floor
    assert (("scheduler", "celery.beat.PersistentScheduler"),) in {
        tuple(p for p in key if p[0] == "scheduler") for key in late["celery_beat_info"]
    }
    status, body = beat.livez()
    assert (status, body["state"]) == (200, "ticking")
    _, ready = wait_until(lambda: (r := beat.readyz())[0] == 200 and r, 10, message="/readyz 200")
    assert ready["checks"]["broker"]["up"] and ready["checks"]["scheduler"]["up"]


def test_a_wedged_tick_fails_livez_with_why_and_its_skipped_runs_are_missed(
    start_beat: Callable[..., BeatProcess],
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    # Given a beat whose publishes block while a file exists, with a 2 s liveness timeout
    wedge = tmp_path / "wedge"
    beat = start_beat({**worker_env, "BEAT_TEST_WEDGE": str(wedge), "BEAT_LIVENESS_TIMEOUT": "2"})
    wait_until(lambda: counter(beat, "sent", "every-1s") >= 2, 10, message="two runs")
    # When a publish blocks beat's loop
    wedge.touch()
    _, body = wait_until(lambda: (r := beat.livez())[0] == 503 and r, 10, message="/livez 503")
    # Then /livez says why, and /readyz names the scheduler
    assert body["state"] == "stale" and body["timeout_seconds"] == 2
    assert (
        "a tick is blocked" in body["reason"] and "over the 2 s liveness timeout" in body["reason"]
    )
    _, ready = wait_until(lambda: (r := beat.readyz())[0] == 503 and r, 5, message="/readyz 503")
    assert ready["checks"]["scheduler"]["error"] == "stale"
    missed_before = counter(beat, "missed", "every-1s")
    blocked_until = time.monotonic() + 1
    wait_until(lambda: time.monotonic() >= blocked_until, 5, message="one more second blocked")
    # When the publish goes through
    wedge.unlink()
    wait_until(lambda: beat.livez()[0] == 200, 10, message="/livez 200 again")
    wait_until(
        lambda: counter(beat, "missed", "every-1s") > missed_before, 10, message="missed runs"
    )
    # Then the runs due while the loop was blocked were missed, and none is a catch-up
    times = published(redis_client, "every-1s")
    gap = max(b - a for a, b in itertools.pairwise(times))
    missed = counter(beat, "missed", "every-1s") - missed_before
    assert abs(missed - (math.floor(gap) - 1)) <= 1, (missed, gap)
    assert counter(beat, "catchup", "every-1s") == 0


def test_restarts_and_a_dead_broker_count_catchups_missed_runs_and_send_errors(
    start_beat: Callable[..., BeatProcess], worker_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    broker = PrivateRedis(tmp_path / "redis").start()
    client = redis.Redis(port=broker.port)
    env = {**worker_env, "REDIS_URL": broker.url}
    schedule = tmp_path / "schedule"
    try:
        second = restarted_after_several_periods(start_beat, env, schedule, client)
        broker_down_while_running(second, broker, client)
        second.stop()
        broker_down_at_start(start_beat, env, schedule, broker)
    finally:
        broker.stop()


def restarted_after_several_periods(
    start_beat: Callable[..., BeatProcess], env: dict[str, str], schedule: Path, client: redis.Redis
) -> BeatProcess:
    # Given a beat stopped with SIGTERM after a few runs (its schedule file synced)
    first = start_beat(env, schedule=schedule)
    wait_until(lambda: counter(first, "sent", "every-2s") >= 2, 10, message="a few runs")
    assert first.stop() == 0
    stopped_at = time.time()
    # When it starts again after several periods: the downtime is what is under test
    time.sleep(3.5)
    second = start_beat(env, schedule=schedule)
    # Then its first run of each entry is the catch-up, and the runs before it were missed
    wait_until(
        lambda: all(counter(second, "catchup", name) == 1 for name in FAST_ENTRIES),
        15,
        message="the catch-up runs",
    )
    for name, period in FAST_ENTRIES.items():
        times = published(client, name)
        before = max(t for t in times if t < stopped_at)
        catchup = min(t for t in times if t > stopped_at)
        # Due times every period after the last run, up to the tick that sent the catch-up;
        # that tick started before its publish (the first one also connects to the broker),
        # so one due time fewer may have passed than the publish times say
        most = math.floor((catchup - before + STAMP_SLACK_SECONDS) / period) - 1
        missed = counter(second, "missed", name)
        assert most - 1 <= missed <= most and missed >= 1, (name, catchup - before, missed)
    assert counter(second, "sent", "every-1s") >= 1
    return second


def broker_down_while_running(beat: BeatProcess, broker: PrivateRedis, client: redis.Redis) -> None:
    errors_before = counter(beat, "send_errors", "every-1s")
    # When the broker is down for 10 s
    broker.stop()
    down_until = time.monotonic() + 10
    states = []
    while time.monotonic() < down_until:
        states.append(beat.livez()[0])
        time.sleep(0.5)
    # Then the sends in between failed and were counted, beat stayed live and was not ready
    assert counter(beat, "send_errors", "every-1s") > errors_before
    assert set(states) == {200}
    status, ready = beat.readyz()
    assert status == 503 and not ready["checks"]["broker"]["up"]
    # And when the broker is back, beat sends again and is ready
    broker.start()
    back = time.time()
    wait_until(lambda: published(client, "every-1s")[-1] > back, 20, message="a run sent after")
    wait_until(lambda: beat.readyz()[0] == 200, 10, message="/readyz 200")


def broker_down_at_start(
    start_beat: Callable[..., BeatProcess],
    env: dict[str, str],
    schedule: Path,
    broker: PrivateRedis,
) -> None:
    # Given the broker down
    broker.stop()
    # When a beat starts
    third = start_beat(env, schedule=schedule)
    down_until = time.monotonic() + 10
    seen: list[tuple[int, Any, float | None]] = []
    while time.monotonic() < down_until:
        status, body = third.livez()
        seen.append((status, body["state"], third.value("celery_beat_active")))
        time.sleep(0.5)
    # Then it waits for the broker, live, inactive and not ready
    assert {status for status, _, _ in seen} == {200}
    assert {active for _, _, active in seen} == {0}
    assert seen[-1][1] == "connecting"
    status, ready = third.readyz()
    assert status == 503 and ready["checks"]["scheduler"]["error"] == "connecting"
    # And once the broker is back it sends every entry again, and is active and ready
    broker.start()
    back = time.time()
    client = redis.Redis(port=broker.port)
    wait_until(
        lambda: all(published(client, name)[-1] > back for name in FAST_ENTRIES),
        30,
        message="every entry sent after the broker came back",
    )
    assert third.value("celery_beat_active") == 1
    # every-1s was overdue when beat started (the one before stopped seconds earlier):
    # its first run is the catch-up, however long beat waited for its broker
    assert counter(third, "catchup", "every-1s") == 1
    wait_until(lambda: third.readyz()[0] == 200, 10, message="/readyz 200")
