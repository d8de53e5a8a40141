"""The relay never blocks a task, and the export process delivers what every process sent.

The export-process tests start the real ``python -m telemetry.tracing.export.process``
through its supervisor, against the real OTLP/HTTP receiver, with spans sent from
forked processes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from telemetry.tracing.export.relay import DropCounter, SpanRelay
from telemetry.tracing.export.rows import encode
from telemetry.tracing.export.supervisor import ExportProcess, relayed_provider
from telemetry.tracing.service import Service
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.worker_process import ROOT, wait_until


def relay_on_a_small_socket() -> tuple[SpanRelay, socket.socket, DropCounter]:
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender.setblocking(False)
    drops = DropCounter()
    return SpanRelay(sender, TracerProvider().resource, drops), receiver, drops


def end_spans(provider: TracerProvider, count: int, name: str = "work") -> None:
    tracer = provider.get_tracer("test")
    for _ in range(count):
        tracer.start_span(name).end()


def test_a_full_socket_drops_the_span_at_once_and_counts_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Given an export process that reads nothing, when spans keep ending, then each send
    returns at once, the overflow is counted, and one warning says so."""
    relay, _unread, drops = relay_on_a_small_socket()
    provider = TracerProvider()
    provider.add_span_processor(relay)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "telemetry.tracing.export"):
        end_spans(provider, 200)
    assert time.monotonic() - started < 2
    assert drops.count > 0
    assert [r.message for r in caplog.records if "spans dropped" in r.message] == [
        "spans dropped before export: 1 so far (last: BlockingIOError)"
    ]


def test_unsampled_spans_are_not_sent() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    relay, receiver, _ = relay_on_a_small_socket()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(relay)
    end_spans(provider, 3)
    receiver.setblocking(False)
    with pytest.raises(BlockingIOError):
        receiver.recv(65536)


def test_a_span_larger_than_a_datagram_is_dropped() -> None:
    relay, _, drops = relay_on_a_small_socket()
    relay.send([["x" * (2 << 20)]])
    assert drops.count == 1


@pytest.fixture
def export_env(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> OtlpReceiver:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    return receiver


@pytest.fixture
def export(export_env: OtlpReceiver) -> Iterator[ExportProcess]:
    process = ExportProcess("INFO", "text")
    process.start()
    yield process
    process.stop()


def in_a_forked_child(export: ExportProcess, count: int, name: str) -> None:
    """Fork, end ``count`` spans in the child through its own relay, exit at once (no flush)."""
    pid = os.fork()
    if pid == 0:  # the child: as a pool process does after fork
        try:
            export.in_pool_process()
            provider, _ = relayed_provider(export, "w@host", Service("relayed"))
            end_spans(provider, count, name)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def test_every_span_of_an_exiting_process_is_exported(
    export: ExportProcess, export_env: OtlpReceiver
) -> None:
    """Given processes that end spans and exit right away, as recycled pool processes do,
    then every span reaches the collector, with the resource of the process that made it."""
    for child in range(3):
        in_a_forked_child(export, 50, f"child-{child}")
    assert export.stop()
    spans = export_env.named("child-")
    assert len(spans) == 150
    assert {s.resource["celery.worker.hostname"] for s in spans} == {"w@host"}
    assert {s.resource["service.name"] for s in spans} == {"relayed"}
    assert len({s.resource["service.instance.id"] for s in spans}) == 3


def test_a_killed_export_process_is_replaced_and_loses_nothing_queued(
    export: ExportProcess, export_env: OtlpReceiver
) -> None:
    first = export._process
    assert first is not None
    first.send_signal(signal.SIGKILL)
    first.wait()
    # Sent while no export process runs: it waits in the socket
    in_a_forked_child(export, 20, "while-down")
    wait_until(lambda: export._process is not first, 10, message="a new export process")
    wait_until(lambda: len(export_env.named("while-down")) == 20, 20, message="the 20 queued spans")


def test_a_malformed_datagram_is_logged_and_skipped(
    export_env: OtlpReceiver, tmp_path: Path
) -> None:
    export = ExportProcess("INFO", "text")
    log = tmp_path / "stderr"
    with log.open("wb") as stderr:  # the export process logs to the stderr it starts with
        saved = os.dup(2)
        os.dup2(stderr.fileno(), 2)
        try:
            export.start()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    try:
        export.sender.send(b"not a span")
        export.sender.send(b'[{},""]\n{"not": "rows"}')
        export.sender.send(encode(b"{}", [[1, 2]]))
        in_a_forked_child(export, 1, "after-garbage")
    finally:
        assert export.stop()
    assert export_env.named("after-garbage")
    assert log.read_text().count("dropped a malformed span datagram") == 1


def test_an_orphaned_export_process_exits(export_env: OtlpReceiver) -> None:
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    # Its "parent" is not its parent: as if the worker had died
    process = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "telemetry.tracing.export.process",
                "--fd",
                str(receiver.fileno()),
            ),
            *("--parent", str(os.getpid() + 999_999)),
        ],
        cwd=ROOT,
        pass_fds=(receiver.fileno(),),
    )
    try:
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        sender.close()
        receiver.close()
