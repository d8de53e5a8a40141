"""A pool process's relay thread: rows leave in order from a thread of their own, a flush
waits for every one, a forked copy starts its own thread, and what cannot wait is counted."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from telemetry.tracing.export.relay import DropCounter, RelayThread, SpanRelay
from telemetry.tracing.export.rows import SpanDecoder, row_of
from tests.support.worker_process import wait_until


class RecordingRelay(SpanRelay):
    """The real relay on a socket pair, noting which thread sent each datagram."""

    def __init__(self) -> None:
        self.sender, self.receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sender.setblocking(False)
        self.receiver.settimeout(5)
        super().__init__(self.sender, TracerProvider().resource, DropCounter())
        self.threads: list[int] = []

    def send(self, rows: Sequence[Sequence[Any]]) -> None:
        self.threads.append(threading.get_ident())
        super().send(rows)

    def names(self, count: int) -> list[str]:
        """The span names of the next ``count`` datagrams, decoded by the export process's decoder."""
        decoder = SpanDecoder()
        return [
            span.name for _ in range(count) for span in decoder.decode(self.receiver.recv(1 << 20))
        ]


def rows_named(name: str) -> list[Any]:
    provider = TracerProvider()
    span = provider.get_tracer("test").start_span(name)
    span.end()
    return [row_of(span)]  # type: ignore[arg-type]


def test_rows_leave_in_order_from_another_thread_and_a_flush_waits_for_them() -> None:
    relay = RecordingRelay()
    thread = RelayThread(relay)
    names = [f"span-{i}" for i in range(50)]
    for name in names:
        thread.send(rows_named(name))
    assert thread.flush(timeout=5)
    # The flush returned after the last send, not before
    assert len(relay.threads) == 50
    assert relay.names(50) == names
    assert set(relay.threads) != {threading.get_ident()} and len(set(relay.threads)) == 1
    assert relay._drops.count == 0


def test_a_forked_copy_sends_through_a_thread_of_its_own() -> None:
    """Given a relay thread already running in this process, when a forked child sends and
    flushes (as a pool process does at exit), then its spans arrive: the inherited queue,
    which no thread of the child reads, is not used."""
    relay = RecordingRelay()
    thread = RelayThread(relay)
    thread.send(rows_named("parent"))
    assert thread.flush(timeout=5)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            thread.send(rows_named("child"))
            code = 0 if thread.flush(timeout=5) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert relay.names(2) == ["parent", "child"]


def test_a_flush_in_a_process_that_sent_nothing_returns_at_once() -> None:
    assert RelayThread(RecordingRelay()).flush(timeout=0.01)


class BlockedRelay(RecordingRelay):
    """Its first send waits until released, so the thread falls behind on purpose."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, rows: Sequence[Sequence[Any]]) -> None:
        self.entered.set()
        assert self.release.wait(10)
        if rows[0][0] == "poison":  # a row's first field is the span's name
            raise ValueError("cannot encode")
        super().send(rows)


def test_a_thread_that_falls_behind_drops_and_counts_the_overflow() -> None:
    relay = BlockedRelay()
    thread = RelayThread(relay, max_pending=2)
    thread.send(rows_named("first"))
    wait_until(relay.entered.is_set, 5, message="the thread inside its first send")
    for name in ("second", "third", "fourth", "fifth"):
        thread.send(rows_named(name))
    assert relay._drops.count == 2  # two queued behind the first, two dropped
    relay.release.set()
    assert thread.flush(timeout=5)
    assert relay.names(3) == ["first", "second", "third"]


def test_a_span_that_cannot_be_sent_is_counted_and_the_next_one_still_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = BlockedRelay()
    relay.release.set()
    thread = RelayThread(relay)
    with caplog.at_level(logging.WARNING, "telemetry.tracing.export"):
        thread.send(rows_named("poison"))
        thread.send(rows_named("after"))
        assert thread.flush(timeout=5)
    assert relay._drops.count == 1
    assert relay.names(1) == ["after"]
    assert "ValueError while sending" in caplog.text
