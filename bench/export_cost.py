"""``python -m bench.export_cost --spans N --encoder records|sdk --endpoint URL``: one export
process's work for N run spans, between two callgrind dumps.

The export process's instructions per task in a drain under callgrind are
mostly its timers: the drain runs about 50 times slower than natively, so the
50 ms socket reads and the batch posts come about 50 times as often per span.
This runs the export process's own code on N run records a pool process sent
(``telemetry.tracing.export.run_records``), as a drain at full speed would hand
them over: the records are queued on the socket first, then read
(``process.Reader``), decoded, batched by the SDK's batch processor (512 spans a
request) and posted to ``URL`` by the exporter the encoder names, and the last
batch is flushed. ``bench.instructions`` runs it under callgrind; the process
asks callgrind to dump its counters (``callgrind_control --dump``) just before
and just after, so start-up and the records' making are left out.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import uuid

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from telemetry.tracing.attributes import INSTRUMENTATION
from telemetry.tracing.collector import CollectorState
from telemetry.tracing.export.process import ENCODERS, RECORDS, Reader, SpanSink
from telemetry.tracing.export.relay import SOCKET_BUFFER_BYTES, DropCounter, SpanRelay
from telemetry.tracing.providers import exporter_from_environment, worker_resource
from telemetry.tracing.run_ids import RunIds
from telemetry.tracing.run_span import RunSpan
from telemetry.tracing.service import Service

#: Set by bench.instructions when the process runs under callgrind.
UNDER_CALLGRIND = "BENCH_CALLGRIND"


def mark() -> None:
    """A callgrind dump of this process's counters, when it runs under callgrind."""
    if os.environ.get(UNDER_CALLGRIND):
        subprocess.run(
            ["callgrind_control", "--dump", str(os.getpid())],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def send_runs(relay: SpanRelay, count: int) -> None:
    """``count`` run spans of a no-op task, ended as a pool process ends them."""
    draw = RunIds(TracerProvider())
    scope = InstrumentationScope(INSTRUMENTATION)
    for _ in range(count):
        ids = draw(None, "run/bench_noop", dict)
        RunSpan(ids, "bench_noop", str(uuid.uuid4()), "default", 0, "redis", relay, scope).finish(
            "succeeded"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export_cost")
    parser.add_argument("--spans", type=int, default=2048)
    parser.add_argument("--encoder", choices=ENCODERS, default=RECORDS)
    parser.add_argument("--endpoint", required=True, help="an OTLP/HTTP endpoint that discards")
    args = parser.parse_args(argv)
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = args.endpoint
    exporter = exporter_from_environment(records=args.encoder == RECORDS)
    assert exporter is not None
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    sender.setblocking(False)
    drops = DropCounter()
    relay = SpanRelay(sender, worker_resource(Service("jobpilot-worker"), "celery@bench"), drops)
    sink = SpanSink(exporter, CollectorState())
    reader = Reader(receiver, sink)
    # Warm up: imports, the HTTP connection, the encoder's templates
    send_runs(relay, 512)
    reader.read_waiting()
    sink.processor.force_flush()
    send_runs(relay, args.spans)
    if drops.count:
        raise SystemExit(f"export_cost: {drops.count} records dropped: fewer spans")
    mark()
    reader.read_waiting()
    sink.close()
    mark()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
