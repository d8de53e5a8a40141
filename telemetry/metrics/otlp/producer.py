"""``messaging.client.sent.messages`` from a process that publishes and is no worker.

    otlp = ProducerMetrics(lambda: counter, "redis")
    otlp.start()    # at the first publish (telemetry.wiring.producer); off unless otlp is named
    otlp.stop()     # when the last app is uninstalled

The count is ``celery_task_published_total``, read at export time. If the process
has an SDK ``MeterProvider`` of its own (``opentelemetry-instrument`` with
``opentelemetry-distro`` sets one), the counter joins it and goes out with the
process's other metrics, as the publish spans join its tracer provider.
Otherwise this process gets an export of its own (``telemetry.metrics.otlp.exporter``):
one thread, and a last, bounded export at exit. A bad variable is logged as one
line and the process publishes on without OTLP metrics. A process that forks
after its first publish exports from the parent only.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import Counter

from telemetry.metrics.otlp.environment import export_config, export_notes
from telemetry.metrics.otlp.exporter import MetricExport
from telemetry.metrics.otlp.names import SCOPE
from telemetry.metrics.otlp.readings import Derived, Observed, sent_messages
from telemetry.settings import ConfigError
from telemetry.tracing.providers import worker_resource
from telemetry.tracing.service import Service
from telemetry.version import __version__

logger = logging.getLogger("telemetry.metrics.otlp")


class ProducerMetrics:
    """The sent-messages counter of a publishing process, over OTLP."""

    def __init__(
        self, counter: Callable[[], Counter | None], system: str, service: Service | None = None
    ) -> None:
        """``service``: the resource's service defaults (``telemetry.tracing.service``)."""
        self.sent = sent_messages(counter, system)
        self.service = service or Service()
        self.export: MetricExport | None = None
        self.on_global_provider = False
        self._stopped = False

    def observed(self) -> list[Observed]:
        return [Observed(self.sent.instrument, self._observe)]

    def derived(self) -> list[Derived]:
        return []

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        # A global provider's instrument cannot be removed: after stop it observes nothing.
        return [] if self._stopped else self.sent.callback(options)

    def start(self) -> None:
        try:
            config = export_config()
        except ConfigError as exc:
            logger.error("%s; no OTLP metrics in this process", exc)
            return
        for note in export_notes():
            logger.warning(note)
        if config is None:
            return
        provider = metrics.get_meter_provider()
        if isinstance(provider, MeterProvider):
            instrument = self.sent.instrument
            meter = provider.get_meter(SCOPE, __version__)
            meter.create_observable_counter(
                instrument.name, [self._observe], instrument.unit, instrument.description
            )
            self.on_global_provider = True
            return
        self.export = MetricExport(config, worker_resource(self.service), self)
        self.export.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        """The last export (bounded), then nothing more is observed."""
        if self.export is not None:
            atexit.unregister(self.stop)
            self.export.stop()
            self.export = None
        self._stopped = True
