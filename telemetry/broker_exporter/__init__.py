"""The broker exporter: queue depth, oldest age, dead letters and unacked records with no worker.

    python -m telemetry.broker_exporter -A yourmodule [-Q extra,queues]

See ``telemetry.broker_exporter.exporter`` for what it serves.
"""
