"""The version of the jobpilot-telemetry distribution: its build reads it from here
(``packages/jobpilot-telemetry/pyproject.toml``), spans carry it as
``telemetry.distro.version``, the broker exporter as its ``version`` label."""

from __future__ import annotations

__version__ = "0.1.0"
