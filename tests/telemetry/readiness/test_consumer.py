"""The consumer check and the reconnect loop's ticks, on kombu's real objects where they matter."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from kombu import Connection

from telemetry.readiness.consumer import ConsumerCheck, ReconnectTicks, silence
from tests.support.worker_process import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def kombu_channel(**state: Any) -> SimpleNamespace:
    """kombu 5.7's own channel state (no ``overdue``): what the check reads from it."""
    defaults = {
        "_in_poll": None,
        "_brpop_sent_at": None,
        "brpop_timeout": 1,
        "health_check_interval": 10,
        "closed": False,
    }
    return SimpleNamespace(**{**defaults, **state})


def consumer_on(channel: Any) -> SimpleNamespace:
    return SimpleNamespace(connection=object(), task_consumer=SimpleNamespace(channel=channel))


def test_kombu_s_rule_for_a_stale_brpop_is_read_from_its_channel() -> None:
    assert silence(kombu_channel(), 100.0) is None  # nothing pending: a full pool is not silence
    pending = kombu_channel(_in_poll=object(), _brpop_sent_at=100.0)
    assert silence(pending, 110.9) is None
    assert silence(pending, 111.0) == 11.0


def test_the_check_fails_on_silence_and_while_reconnecting_and_says_so_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    channel = kombu_channel()
    consumer = consumer_on(channel)
    check = ConsumerCheck(lambda: consumer, "redis://:**@broker:6379/0", clock)
    assert check.run(1).up
    channel._in_poll, channel._brpop_sent_at = object(), clock.now
    clock.now += 11
    with caplog.at_level(logging.WARNING, "telemetry.readiness"):
        result = check.run(1)
        assert (result.up, result.error) == (False, "NoReply")
        consumer.connection = None  # Celery's reconnect loop
        clock.now += 5
        result = check.run(1)
        assert (result.up, result.error) == (False, "Reconnecting")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "consumer: no answer from the broker redis://:**@broker:6379/0 for 11 s (no reply to its fetch)"
    ]


def test_reconnect_ticks_come_from_celery_s_retry_loop_and_keep_its_callback() -> None:
    """Given a consumer whose ensure_connected retries a dead broker the way Celery's does,
    then the ticks come every second of the wait, Celery's own callback still runs, and
    stop() gives the consumer its method back."""
    ticks: list[float] = []
    callbacks: list[float] = []

    class Consumer:
        def on_connection_error_after_connected(self, exc: Exception) -> None:
            callbacks.append(-1.0)

        def ensure_connected(self, conn: Connection) -> Connection:
            return conn.ensure_connection(
                lambda exc, interval: None, 1, callback=lambda: callbacks.append(time.monotonic())
            )

    consumer = Consumer()
    watcher = ReconnectTicks(lambda: ticks.append(time.monotonic()))
    watcher.ready(consumer)
    dead = Connection(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - the broker never answers
        consumer.ensure_connected(dead)
    assert len(ticks) >= 3 and len(callbacks) == len(ticks) - 1
    assert max(b - a for a, b in zip([started, *ticks], ticks, strict=False)) < 1.5
    # And the loss handling that comes first ticks as it starts
    consumer.on_connection_error_after_connected(OSError())
    assert len(callbacks) == len(ticks) - 1 and callbacks[-1] == -1.0
    watcher.stop()
    assert not {"ensure_connected", "on_connection_error_after_connected"} & set(consumer.__dict__)
