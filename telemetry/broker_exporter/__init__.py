"""The broker exporter: queue depth, oldest age, failed work and unacked records with no worker,
and the operator API for failed work (``telemetry.ops``).

    python -m telemetry.broker_exporter -A yourmodule [-Q extra,queues]

See ``telemetry.broker_exporter.exporter`` for what it serves.
"""
