"""Rules, dashboards and their generator (``python -m dashboards.generate``)."""
