"""What the span export process spends per span (``python -m bench --suite export``).

A real export process (``python -m telemetry.tracing.export.process``) reads the
datagrams of ``run`` spans from a socket pair and posts them to the discarding
OTLP/HTTP sink. Three paths, the worker's and the two it replaced:

* ``encoded``: spans sent already OTLP protobuf (``telemetry.tracing.export.encoded``),
  checked and framed into the request body, posted by the exporter's client
  (``telemetry.tracing.export.process.RequestSink``): what the worker does with OTLP/HTTP;
* ``rows``: the same spans as JSON rows, the request body built from them
  (``telemetry.tracing.export.pieces`` in the export process), posted the same way;
* ``sdk``: the same JSON rows, SDK spans rebuilt from them, through the SDK's
  batch processor and ``OTLPSpanExporter.export`` (``SdkSink``): what the worker
  does with any other exporter.

The spans are the ones a pool process sends: this project's handlers run around
real task signals (``bench.spans``), one fresh task id per span. Each run feeds
``SPANS`` datagrams at about ``RATE`` a second, as a busy worker sends them, and
reads the process's CPU time (``/proc/<pid>/stat``) from once it is idle after
start-up to once its last batch is posted. Runs alternate the paths in a shuffled
order per round; figures are medians over rounds, and each path's ratio is
against ``sdk``, measured per round.
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.drain import ROOT, process_cpu_seconds, settle
from bench.sink import DiscardingSink
from bench.spans import lean_set, recorded_spans
from telemetry.tracing.export.encoded import DatagramDecoder
from telemetry.tracing.export.process import READ_INTERVAL_SECONDS
from telemetry.tracing.export.relay import SHUTDOWN, SOCKET_BUFFER_BYTES
from telemetry.tracing.export.rows import encode, resource_line, row_of
from telemetry.tracing.providers import DEFAULT_SCHEDULE_DELAY_MILLIS

PATHS = ("encoded", "rows", "sdk")
SPANS = 20_000
RATE = 2_000
EXIT_TIMEOUT_SECONDS = 10.0
#: Spans recorded per socket pair: its buffer holds about 6,000.
RECORD_CHUNK = 2_000


def as_rows(datagrams: list[bytes]) -> list[bytes]:
    """The same spans, each as a datagram of one JSON row."""
    decoder = DatagramDecoder()
    return [
        encode(resource_line(span.resource), [row_of(span)])
        for datagram in datagrams
        for span in decoder.decode(datagram)
    ]


def run_once(path: str, datagrams: list[bytes], sink: DiscardingSink) -> float:
    """CPU-µs per span of one export process fed ``datagrams`` on ``path``."""
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.export_path", "sdk" if path == "sdk" else "request"),
            *("--fd", str(receiver.fileno()), "--parent", str(os.getpid())),
        ],
        cwd=ROOT,
        pass_fds=(receiver.fileno(),),
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint},
    )
    try:
        settle([process.pid])  # imported and idle in its read loop
        started = process_cpu_seconds(process.pid)
        per_read = int(RATE * READ_INTERVAL_SECONDS)
        for first in range(0, len(datagrams), per_read):
            for datagram in datagrams[first : first + per_read]:
                sender.send(datagram)
            time.sleep(READ_INTERVAL_SECONDS)
        time.sleep(DEFAULT_SCHEDULE_DELAY_MILLIS / 1000)  # the last batch is due
        settle([process.pid])  # and posted
        spent = process_cpu_seconds(process.pid) - started
        sender.send(SHUTDOWN)
        process.wait(EXIT_TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
        sender.close()
        receiver.close()
    return spent / len(datagrams) * 1e6


def measure(rounds: int, spans: int = SPANS) -> dict[str, Any]:
    datagrams = [
        datagram
        for first in range(0, spans, RECORD_CHUNK)
        for datagram in recorded_spans(lean_set, min(RECORD_CHUNK, spans - first))
    ]
    rows = as_rows(datagrams)
    fed = {"encoded": datagrams, "rows": rows, "sdk": rows}
    sink = DiscardingSink()
    samples: dict[str, list[float]] = {path: [] for path in PATHS}
    ratios: dict[str, list[float]] = {path: [] for path in PATHS}
    rng = random.Random(7)
    for _ in range(rounds):
        order = list(PATHS)
        rng.shuffle(order)
        for path in order:
            samples[path].append(run_once(path, fed[path], sink))
        for path in PATHS:
            ratios[path].append(samples[path][-1] / samples["sdk"][-1])
    return {
        "rounds": rounds,
        "spans": len(datagrams),
        "rate_per_second": RATE,
        "paths": [
            {
                "path": path,
                "cpu_us_per_span_median": statistics.median(samples[path]),
                "cpu_us_per_span_min": min(samples[path]),
                "cpu_us_per_span_max": max(samples[path]),
                "ratio_median": statistics.median(ratios[path]),
                "ratio_min": min(ratios[path]),
                "ratio_max": max(ratios[path]),
            }
            for path in PATHS
        ],
        "posts": sink.requests,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"export process, {result['spans']} run spans at {result['rate_per_second']}/s")
    print(f"{'path':<9}{'CPU-us/span':>13}{'min':>8}{'max':>8}{'vs sdk':>8}{'min':>7}{'max':>7}")
    for row in result["paths"]:
        print(
            f"{row['path']:<9}{row['cpu_us_per_span_median']:>13.1f}"
            f"{row['cpu_us_per_span_min']:>8.1f}{row['cpu_us_per_span_max']:>8.1f}"
            f"{row['ratio_median']:>8.3f}{row['ratio_min']:>7.3f}{row['ratio_max']:>7.3f}"
        )
