"""Upstream's Celery instrumentor, taken out while the telemetry traces Celery, and put back after.

    UPSTREAM_CELERY.take_over("celeryd_init")   # one log line, the first time only
    UPSTREAM_CELERY.restore()                   # instrumented again, if taken out here

``opentelemetry-instrumentation-celery`` makes a ``run/{task}`` and an
``apply_async/{task}`` span of its own for every task, beside ours; its pool
processes export their own spans and lose them when they recycle. The
telemetry takes it out once every instrumentor has loaded, whatever their
order (entry points load in no guaranteed order):

* right after the last instrumentor loads (:func:`after_instrumentors`, the
  ``opentelemetry_post_instrument`` entry point), which is before any publish:
  a receiver taken out during a publish's ``before_task_publish`` would still
  be called for that message, since Celery calls the receivers it listed when
  the signal was sent, and it would leave its span current;
* again at ``celeryd_init`` in a worker and at the first publish in a producer,
  in case that hook did not run (an instrumentor after ours raised).

It says so in one warning line, the first time: a process logs it before its
logging is set up, where only warnings are shown.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

logger = logging.getLogger("telemetry.zerocode")

#: Where ``CeleryInstrumentor`` lives; not imported here: if nobody imported it, it is not active.
CELERY_INSTRUMENTATION = "opentelemetry.instrumentation.celery"
TAKEN_OUT = (
    "telemetry: opentelemetry-instrumentation-celery is uninstrumented (%s): "
    "the telemetry makes each task's consumer span and each publish's producer span"
)


class UpstreamCelery:
    """Upstream's ``CeleryInstrumentor`` in this process."""

    def __init__(self) -> None:
        self.taken_out = False

    def take_over(self, moment: str) -> bool:
        """Uninstrument it if it is instrumented; True if it was, here and now."""
        instrumentor = _instrumentor()
        if instrumentor is None or not instrumentor.is_instrumented_by_opentelemetry:
            return False
        instrumentor.uninstrument()
        self.taken_out = True
        logger.warning(TAKEN_OUT, moment)
        return True

    def restore(self) -> None:
        """Instrument it again if :meth:`take_over` took it out."""
        instrumentor = _instrumentor()
        if self.taken_out and instrumentor is not None:
            instrumentor.instrument()
        self.taken_out = False


def _instrumentor() -> Any:
    module = sys.modules.get(CELERY_INSTRUMENTATION)
    return None if module is None else module.CeleryInstrumentor()


#: The process's.
UPSTREAM_CELERY = UpstreamCelery()


def after_instrumentors() -> None:
    """``opentelemetry_post_instrument``: every instrumentor has loaded; ours, if active, takes over."""
    from telemetry.zerocode.instrumentor import TelemetryInstrumentor

    if TelemetryInstrumentor().is_instrumented_by_opentelemetry:
        UPSTREAM_CELERY.take_over("every instrumentor has loaded")
