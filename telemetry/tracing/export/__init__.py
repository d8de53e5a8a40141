"""The export hop; see ``telemetry.tracing.export.relay`` for now."""
