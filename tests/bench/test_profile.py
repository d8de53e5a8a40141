"""The profile's attribution of py-spy stacks to celery, metrics and tracing."""

from __future__ import annotations

from bench.profile import summarize

RAW = "\n".join(
    [
        "process 1;thread (0x1);run (celery/worker/worker.py:1);on_message (kombu/messaging.py:2) 60",
        "process 1;thread (0x1);on_message (kombu/messaging.py:2);"
        "inc (prometheus_client/values.py:3) 10",
        "process 1;thread (0x1);trace_task (celery/app/trace.py:4);"
        "end (telemetry/tracing/run_span.py:5) 20",
        "process 1;thread (0x2);serve (telemetry/tracing/export/process.py:6);"
        "read_waiting (telemetry/tracing/export/process.py:7) 5",
        "process 1;thread (0x1);received (telemetry/metrics/recorder.py:8) 5",
        "not a stack line",
    ]
)


def test_busy_samples_are_split_by_the_frames_they_hold() -> None:
    summary = summarize(RAW)
    assert summary["busy_samples"] == 100
    assert summary["share"] == {"celery": 0.6, "metrics": 0.15, "tracing": 0.25}


def test_the_busiest_telemetry_leaves_are_named_by_area_function_and_file() -> None:
    leaves = {row["leaf"]: row["share"] for row in summarize(RAW)["top_telemetry_leaves"]}
    assert leaves == {
        "tracing: end (run_span.py)": 0.2,
        "metrics: inc (values.py)": 0.1,
        "tracing: read_waiting (process.py)": 0.05,
        "metrics: received (recorder.py)": 0.05,
    }
