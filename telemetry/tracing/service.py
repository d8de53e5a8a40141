"""Which service a process's spans belong to: the defaults of ``service.name`` and ``service.version``.

    telemetry.install(app)                                   # service.name: the app's main name
    telemetry.install(app, service_name="billing-worker", service_version="2.1.0")

The name defaults to the first of these that is set:

* the ``service_name`` given to ``telemetry.install``;
* the app's main name (``Celery("inventory")``), unless it is unset or ``__main__``;
* the module that ``celery -A`` names (``celery -A proj.tasks worker``: ``proj.tasks``),
  in a process the ``celery`` command started;
* else none, and the SDK's own ``unknown_service:python`` applies.

These are defaults only: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
win over them (:func:`telemetry.tracing.providers.worker_resource`). A worker
resolves them in its main process at ``worker_init``, and its pool and export
processes inherit them; a process that only publishes resolves them at its
first publish, for the first installed app.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click
from celery import Celery

#: Celery's main name when the app is built in a script run as ``python script.py``.
SCRIPT_MAIN = "__main__"


@dataclass(frozen=True)
class Service:
    """``service.name`` and ``service.version`` defaults; None leaves one unset."""

    name: str | None = None
    version: str | None = None

    def for_app(self, app: Celery) -> Service:
        """These values, the name defaulting to the app's (see the module docstring)."""
        return Service(self.name or app_service_name(app), self.version)


def app_service_name(app: Celery) -> str | None:
    """The app's main name, else the module ``celery -A`` named, else None."""
    main = app.main
    if main and main != SCRIPT_MAIN:
        return str(main)
    return cli_app_module()


def cli_app_module() -> str | None:
    """The module of ``celery -A module[:attribute]`` while the ``celery`` command runs.

    Read from Click's context, which the ``celery`` command keeps for as long as
    it runs (and which a forked pool process inherits), so ``-A``, ``--app`` and
    ``CELERY_APP`` all count; None in a process that no ``celery`` command started,
    or when the app was handed over as an object (``app.worker_main()``).
    """
    context = click.get_current_context(silent=True)
    if context is None:
        return None
    value = context.find_root().params.get("app")
    if not isinstance(value, str) or not value.strip():
        return None
    name = value.strip().partition(":")[0]
    # `-A proj.celery.app` names an attribute of the module `proj.celery`.
    parent = name.rpartition(".")[0]
    if name not in sys.modules and parent in sys.modules:
        return parent
    return name
