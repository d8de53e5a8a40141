"""The floor stand-ins replace the ``run`` span's receivers in a real pool process."""

from __future__ import annotations

import random
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery.signals import worker_process_init
from opentelemetry import trace

from bench import floors
from bench.drain import Variant
from bench.redis_server import PrivateRedis
from bench.sliced import SlicedSession

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SUCCEEDED = re.compile(
    r"succeeded in .*\[task=bench_noop id=(\S+)(?: trace_id=(\w+) span_id=(\w+))?\]"
)


def test_the_context_floor_makes_the_tasks_trace_current_and_forgets_it() -> None:
    """Given a task whose message carries a traceparent, when the context floor's pair
    runs around it, then the parent's trace is current with a span id derived from the
    task id, and nothing is current or kept afterwards."""
    current = floors.CurrentContext()
    task = SimpleNamespace(request=SimpleNamespace(traceparent=PARENT))
    seen = []
    for task_id in ("a-task", "a-task", "another-task"):
        current.on_task_prerun(task_id=task_id, task=task)
        seen.append(trace.get_current_span().get_span_context())
        current.on_task_postrun(task_id=task_id)
        assert not trace.get_current_span().get_span_context().is_valid
    assert {context.trace_id for context in seen} == {int(PARENT[3:35], 16)}
    assert seen[0].span_id == seen[1].span_id != seen[2].span_id
    assert not seen[0].is_remote and seen[0].trace_flags.sampled
    assert current._tokens == {}


def test_a_missing_or_unknown_floor_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_FLOOR", "cheap")
    with pytest.raises(SystemExit, match="BENCH_FLOOR must be one of signals, context"):
        floors.install()
    monkeypatch.delenv("BENCH_FLOOR")
    with pytest.raises(SystemExit, match="not ''"):
        floors.install()


def test_without_the_telemetrys_process_init_receiver_the_worker_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_process_init, "receivers", [])
    with pytest.raises(SystemExit, match="worker with telemetry on"):
        floors._on_worker_init()


def test_in_a_pool_process_the_floor_replaces_the_run_span_receivers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given the run span's four receivers, when a pool process starts, then the floor's
    pair has taken their place (this process's receivers are restored afterwards)."""
    monkeypatch.setenv("BENCH_FLOOR", "signals")
    for signal, uid in floors.RUN_SPAN_RECEIVERS:
        monkeypatch.setattr(signal, "receivers", list(signal.receivers))
        signal.connect(lambda **_: None, weak=False, dispatch_uid=uid)
    floors._on_worker_process_init()
    uids = {key[0] for signal, _ in floors.RUN_SPAN_RECEIVERS for key, _ in signal.receivers}
    assert set(floors.FLOOR_UIDS) <= uids
    assert not uids & {uid for _, uid in floors.RUN_SPAN_RECEIVERS}


def task_lines(log: Path) -> list[tuple[str, str | None, str | None]]:
    return [m.groups() for m in SUCCEEDED.finditer(log.read_text(errors="replace"))]


@pytest.mark.integration
def test_floor_workers_run_their_stand_ins_in_real_pool_processes(tmp_path: Path) -> None:
    """Given the floor suite's two stand-ins in real prefork workers, when a round drains
    30 messages without a traceparent, then every task succeeded; under the context
    floor each task logged a current trace whose span id is the derived id's low half
    (the log lines carry the current span), and under the signals floor none did."""
    tracing = {
        "TELEMETRY_ENABLED": "true",
        "METRICS_ENABLED": "false",
        "OTEL_TRACES_EXPORTER": "none",
    }
    variants = tuple(
        Variant(f"floor_{name}", {**tracing, "BENCH_FLOOR": name}, includes=("bench.floor_plugin",))
        for name in floors.FLOORS
    )
    with PrivateRedis() as server:
        session = SlicedSession(server, variants, "bench_noop", 30, tmp_path, slice_size=15)
        runs = session.round(random.Random(1))
    assert all(run.tasks == 30 for run in runs.values())
    context_lines = task_lines(tmp_path / "floor_context.log")
    assert len(context_lines) == 30
    assert all(trace_id and span_id == trace_id[16:] for _, trace_id, span_id in context_lines)
    signal_lines = task_lines(tmp_path / "floor_signals.log")
    assert len(signal_lines) == 30
    assert all(trace_id is None for _, trace_id, _ in signal_lines)
