"""Readiness: the checks (``checks``) and the probe that runs them and answers /readyz (``probe``)."""
