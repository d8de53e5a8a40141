"""The version of the jobpilot-worker distribution: its build reads it from here
(``pyproject.toml``), and its spans carry it as ``service.version``."""

from __future__ import annotations

__version__ = "0.1.0"
