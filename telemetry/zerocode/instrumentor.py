"""``jobpilot_telemetry``: ``telemetry.install(app)`` for an app that never calls it.

    opentelemetry-instrument celery -A app worker     # loads it from its entry point
    TelemetryInstrumentor().instrument()              # the same, by hand
    TelemetryInstrumentor().uninstrument()            # all of it undone

``opentelemetry-instrument`` instruments a process before it knows which app,
if any, it runs. So ``instrument`` only connects receivers, which install the
telemetry on the app once the process shows it:

* ``import_modules``: Celery imports the app's modules, first thing in a worker
  and in beat (before ``worker_init`` and before beat's service starts, which
  the telemetry's hooks need);
* ``celeryd_init``: the worker's app, should it not have imported its modules;
* the first ``before_task_publish`` of a process that is neither (a producer):
  the current app; this first message gets the publish-time header and its
  span as every later one does.

Once an app is installed (or its install failed, which is logged once), the
publish receiver is disconnected: nothing of this module runs per task or per
publish after that. An app that called ``install`` itself is left as it is.

``instrument`` also registers the telemetry's Redis transport for the whole
process (``telemetry.transport``), so that every kombu connection made after it,
a producer's included, runs its broker commands untraced, and so does Celery's
Redis result backend (``telemetry.tracing.untraced``). Upstream's Celery instrumentor is taken out
(``telemetry.zerocode.upstream``). At ``celeryd_init`` of a worker whose pool
forks, an SDK tracer provider already set up (by a configurator other than
ours) is one warning line: its spans would be exported by each pool process
and lost when it exits.

``uninstrument`` uninstalls the apps installed here, puts upstream's Celery
instrumentor back, and unregisters the transport.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from types import SimpleNamespace
from typing import Any

from celery import Celery
from celery import current_app as celery_current_app
from celery.signals import before_task_publish, celeryd_init, import_modules
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.sdk.trace import TracerProvider

from telemetry import receivers, transport
from telemetry.tracing.untraced import RESULT_BACKEND_CLIENTS
from telemetry.zerocode.upstream import UPSTREAM_CELERY

logger = logging.getLogger("telemetry.zerocode")

#: The entry point's name, which ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` and
#: ``OTEL_PYTHON_CONFIGURATOR`` name too.
NAME = "jobpilot_telemetry"
#: What the delivery hooks and the Redis transport are tested against (``pyproject.toml``).
INSTRUMENTS = ("celery >= 5.6, < 5.8", "kombu >= 5.7, < 5.8")
CONFIGURED_BEFORE_FORK = (
    "telemetry: the OpenTelemetry SDK was set up before the pool forks (OTEL_PYTHON_CONFIGURATOR "
    "is not %s): spans made with it in pool processes are exported by each of them and lost "
    "when it exits; start the worker with OTEL_PYTHON_CONFIGURATOR=%s"
)


class _Installed:
    """The apps this module installed, in order, to be uninstalled."""

    def __init__(self) -> None:
        self.apps: list[Celery] = []


_INSTALLED = _Installed()


def _install(app: Any, moment: str) -> None:
    """Install the telemetry on ``app`` unless it is installed; never raises into Celery."""
    from telemetry.installation import install, installed

    if not isinstance(app, Celery):
        return
    # One try per process: a failure is logged once, not at every publish.
    receivers.disconnect((FIRST_PUBLISH,))
    if installed(app) is not None:
        return
    try:
        install(app)
    except Exception:
        logger.exception("telemetry: install(%s) at %s failed; left out", app.main, moment)
        return
    _INSTALLED.apps.append(app)


def _guarded(handler: Callable[..., None]) -> Callable[..., None]:
    """Telemetry never breaks its host: a failure of a receiver here is logged, and Celery goes on."""

    @functools.wraps(handler)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:
            logger.exception("telemetry: %s failed", handler.__name__)

    return guarded


@_guarded
def _on_import_modules(sender: Any = None, **_: Any) -> None:
    _install(sender, "import_modules")


@_guarded
def _on_celeryd_init(instance: Any = None, conf: Any = None, options: Any = None, **_: Any) -> None:
    from telemetry.wiring.context import forks_pool_processes

    _install(getattr(instance, "app", None), "celeryd_init")
    UPSTREAM_CELERY.take_over("celeryd_init")
    # The worker has not read its pool yet: -P, else the app's worker_pool.
    pool = (options or {}).get("pool_cls") or getattr(conf, "worker_pool", None)
    forks = forks_pool_processes(SimpleNamespace(pool_cls=pool))
    if forks and isinstance(trace.get_tracer_provider(), TracerProvider):
        logger.warning(CONFIGURED_BEFORE_FORK, NAME, NAME)


@_guarded
def _on_first_publish(sender: Any = None, **kwargs: Any) -> None:
    from telemetry.wiring.producer import PUBLISH_HOOKS

    # Receivers connected while a signal is sent miss that message: the hooks get it here.
    hooks_were_connected = bool(PUBLISH_HOOKS.apps)
    _install(celery_current_app._get_current_object(), "the first publish")
    UPSTREAM_CELERY.take_over("the first publish")
    if not hooks_were_connected and PUBLISH_HOOKS.apps:
        PUBLISH_HOOKS.on_before_task_publish(sender=sender, **kwargs)


FIRST_PUBLISH: receivers.Receiver = (
    before_task_publish,
    _on_first_publish,
    "telemetry.zerocode.first_publish",
)
RECEIVERS: tuple[receivers.Receiver, ...] = (
    (import_modules, _on_import_modules, "telemetry.zerocode.import_modules"),
    (celeryd_init, _on_celeryd_init, "telemetry.zerocode.celeryd_init"),
    FIRST_PUBLISH,
)


class TelemetryInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """The ``opentelemetry_instrumentor`` entry point ``jobpilot_telemetry``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        transport.register(NAME)
        RESULT_BACKEND_CLIENTS.hold(NAME)
        receivers.connect(RECEIVERS)

    def _uninstrument(self, **kwargs: Any) -> None:
        from telemetry.installation import uninstall

        receivers.disconnect(RECEIVERS)
        while _INSTALLED.apps:
            uninstall(_INSTALLED.apps.pop())
        UPSTREAM_CELERY.restore()
        RESULT_BACKEND_CLIENTS.release(NAME)
        transport.unregister(NAME)
