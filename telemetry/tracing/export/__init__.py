"""The export hop: every process of a worker hands its finished spans to one export process.

Why: exporting a span in the process that ran the task (the SDK's OTLP protobuf
encoding, then an HTTP POST from a batch thread holding the GIL) cost a pool
process more than the span itself, on the task's own path. So a span takes
three steps, one module each:

1. ``relay`` (in the process that ended the span: a pool process, or the main
   process for its own spans). The span leaves as one datagram on a Unix socket
   pair the main process opened before forking, never pickled: a JSON row
   (``rows``), or, for a ``run`` span task code left alone, a fixed binary
   record (``run_records``). The ``run`` span (``telemetry.tracing.run_span``)
   sends itself as it ends; every other span goes through
   :class:`relay.SpanRelay`, a span processor.
2. ``supervisor`` (in the main process). It starts the export process before
   the pool forks, restarts it when it dies (backing off from 1 s to a minute),
   and stops it at shutdown with a drain and a bounded flush.
3. ``process`` (the export process, ``python -m telemetry.tracing.export.process``,
   at a lower CPU priority). It decodes the rows into SDK spans (``decoder``)
   and hands them to the SDK's ``BatchSpanProcessor`` and the exporter the
   ``OTEL_*`` variables choose; with OTLP/HTTP a run record stays a record,
   whose protobuf span the contained encoder (``encoder``) copies from a
   template the SDK's encoder made. Either way the collector receives exactly
   the SDK's own encoding of each span (tests/telemetry/tracing/export/test_fidelity.py
   and test_encoder.py check it). After a failed
   export, batches are dropped without a try for 30 s (``CollectorState``).

What this guarantees:

* A span is sent when it ends, so a pool process that exits (recycled, killed)
  has lost nothing it had ended; its exit needs no flush.
* Sending never blocks a task. If the export process falls behind and the
  socket's buffer (``relay.SOCKET_BUFFER_BYTES``) is full, the span is dropped,
  and the worker logs how many, once a minute across its processes.
* The main process keeps the receiving end open, so a restarted export process
  reads what was queued meanwhile.

Why the contained encoder, and the condition it is kept on: docs/benchmarks.md,
"The design of tracing" and "Decisions".
"""
