"""The README's demo mode runs end to end, says where traces go, prints its per-queue table, and
serves the failed-work page until Ctrl-C."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import redis_url
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.worker_process import ROOT, free_port, wait_until
from worker.demo import traces_endpoint, traces_line

NO_COLLECTOR_SAYS = ("Transient error", "Connection refused", "Failed to export")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on while the test runs (bound, never listening)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def stopped(
    demo: subprocess.Popen[str], reader: threading.Thread, said: list[str], timeout: float = 30
) -> int:
    """The demo's exit status; a demo still running after ``timeout`` is aborted and the
    test fails with what it said, its threads' stacks included."""
    try:
        return demo.wait(timeout)
    except subprocess.TimeoutExpired:
        demo.send_signal(signal.SIGABRT)
        demo.wait(10)
        reader.join(5)
        raise AssertionError(
            f"the demo did not stop within {timeout} s of Ctrl-C:\n" + "".join(said)
        ) from None


@pytest.mark.integration
def test_demo_prints_what_happened_on_every_queue_and_serves_the_page(
    tmp_path: Path, redis_client: redis.Redis, closed_port: int
) -> None:
    # Given no collector where the OTEL_* variables point
    endpoint = f"http://127.0.0.1:{closed_port}"
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": redis_url(),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.db",
        "METRICS_PORT": str(free_port()),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OPS_PORT": str(free_port()),
        "BROKER_EXPORTER_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
        # A demo that does not stop is aborted, every thread's stack in its output.
        "PYTHONFAULTHANDLER": "1",
    }
    schema = subprocess.run(
        [sys.executable, "-m", "worker.db.schema"], cwd=ROOT, env=env, capture_output=True
    )
    assert schema.returncode == 0
    # When the demo runs, started as a background job is (SIGINT ignored: Ctrl-C must still
    # stop it)
    demo = subprocess.Popen(
        [sys.executable, "-m", "worker.demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(demo.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: any("Ctrl-C stops it" in line for line in said) or demo.poll() is not None,
            180,
            interval=0.2,
            message="the demo to serve its page",
        )
        output = "".join(said)
        assert demo.poll() is None, output
        # Then it prints the page's address and keeps the exporter serving it
        page = f"http://127.0.0.1:{env['OPS_PORT']}/failed"
        assert (
            f"demo: failed work, the refused message among it: {page} "
            "(read-only: set OPS_TOKEN to requeue from it)"
        ) in output
        with urllib.request.urlopen(page, timeout=5) as response:
            assert response.status == 200 and b'<script src="failed.js"' in response.read()
        # And its refused message is there
        with urllib.request.urlopen(
            page.replace("/failed", "/api/v1/failed?kind=dead_letter"), timeout=5
        ) as response:
            listing = json.loads(response.read())
        assert [(i["task"], i["reason"], i["queue"]) for i in listing["items"]] == [
            ("example_task", "bad_arguments", "default")
        ]
        # When Ctrl-C is pressed, the demo stops the exporter and exits 0
        demo.send_signal(signal.SIGINT)
        assert stopped(demo, reader, said) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    reader.join(5)
    output = "".join(said)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(env["OPS_PORT"])), timeout=1).close()
    # And its first line says traces are off and why, and nothing reads as a failure
    assert output.splitlines()[0] == (
        f"demo: traces: off (no collector at {endpoint}/v1/traces; "
        "start one with docker compose up)"
    )
    worker_log = (ROOT / ".run" / "demo-worker.log").read_text()
    for text in NO_COLLECTOR_SAYS:
        assert text not in output + worker_log, text
    table = output.split("wait p50")[1].splitlines()[1:5]
    rows = {line.split()[0]: line.split() for line in table}
    assert set(rows) == {"agents", "briefings", "scraping", "default"}
    assert rows["agents"][2:5] == ["5", "5", "0"]  # started, succeeded, failed
    assert rows["default"][2:5] == ["6", "5", "1"]
    assert all(row[5].endswith("ms") for row in rows.values())  # wait p50 measured from the header
    assert "new dead letters: 1" in output


def test_a_listening_collector_is_named_and_export_stays_on(receiver: OtlpReceiver) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    assert traces_line(environ) == f"traces: sent to {receiver.endpoint}/v1/traces"
    assert "OTEL_TRACES_EXPORTER" not in environ


def test_no_collector_turns_export_off_for_the_demo_only(closed_port: int) -> None:
    environ = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{closed_port}/traces"}
    assert traces_line(environ) == (
        f"traces: off (no collector at http://127.0.0.1:{closed_port}/traces; "
        "start one with docker compose up)"
    )
    assert environ["OTEL_TRACES_EXPORTER"] == "none"


def test_export_switched_off_by_the_user_is_said_and_not_probed() -> None:
    assert traces_line({"OTEL_TRACES_EXPORTER": "none"}) == (
        "traces: off (OTEL_TRACES_EXPORTER=none)"
    )
    assert traces_line({"OTEL_TRACES_EXPORTER": "console"}) == (
        "traces: printed in the worker's log (OTEL_TRACES_EXPORTER=console)"
    )
    assert traces_line({"OTEL_SDK_DISABLED": "true"}) == "traces: off (OTEL_SDK_DISABLED=true)"


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example:443/in",
        },
    ],
)
def test_the_endpoint_is_the_one_the_otlp_exporter_sends_to(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert traces_endpoint(dict(variables)) == OTLPSpanExporter()._endpoint
    assert traces_endpoint({**variables, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == (
        variables.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or variables.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4317"
    )
