"""Traces: providers from ``OTEL_*`` (``providers``), the span handlers (``handlers``), the lean ``run`` span (``run_span``), client spans, their wiring, and the export hop (``export``)."""
