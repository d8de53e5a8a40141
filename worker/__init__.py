"""jobpilot-worker: ``celery -A worker worker -Q agents,briefings,scraping,default``.

Importing the package builds the Celery app, connects its signal receivers and installs
the telemetry for it (``telemetry.install(app)``, as any app would);
settings, connections and servers wait until the app is configured or started.
"""

from __future__ import annotations

from worker import startup
from worker.celery_app import app

celery = app
startup.connect()

__all__ = ["app", "celery"]
