"""The publish hooks: one set per process, whatever the number of installed apps.

Celery's publish signals carry the task name, not the app, so these hooks are
process-wide: the first ``install`` connects them, each app adds its registry,
and the last ``uninstall`` disconnects them. On every publish they stamp
``x-jobpilot-published-at``, scrub argsrepr/kwargsrepr
(``telemetry.metrics.publish``), count ``celery_task_published_total`` and
record an ``apply_async/{task}`` span (``telemetry.tracing.handlers``). A
message with an ETA further away than the Redis broker's visibility timeout is
logged, once per (task, hour): it will run twice
(``telemetry.metrics.at_least_once``).

In a process that only publishes, they configure themselves at its first
publish: the settings are read then (a bad value is one ``settings:`` line and
no telemetry in this process), the counter goes into each installed app's
registry, and spans go to the process's SDK tracer provider, or to a new global
one from the ``OTEL_*`` variables if it has none; with ``OTEL_METRICS_EXPORTER=otlp``
the count also goes out as ``messaging.client.sent.messages``
(``telemetry.metrics.otlp.producer``). A worker takes them over instead
(:meth:`PublishHooks.take_over`), and its metrics and tracing hand them a
recorder and spans (:meth:`PublishHooks.count_with`, :meth:`PublishHooks.trace_with`):
its main process counts into the registry it serves, its pool processes forward
their counts to it. The spans' and OTLP metrics' ``service.name`` defaults to
the first installed app's (``telemetry.tracing.service``).

:class:`Publishing` is the app concern (``telemetry.wiring.concern``) that adds
an app to the hooks at ``install``, takes them over when a worker of it starts,
and removes it at ``uninstall``.
"""

from __future__ import annotations

import atexit
import logging
import threading
from functools import cached_property
from typing import Any

from celery import Celery
from celery.signals import after_task_publish, before_task_publish
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from telemetry import receivers
from telemetry.broker import driver_type, redis_broker, visibility_timeout
from telemetry.metrics.at_least_once import CountdownCheck
from telemetry.metrics.catalogue import task_published
from telemetry.metrics.otlp.producer import ProducerMetrics
from telemetry.metrics.publish import PublishRecorder
from telemetry.settings import ConfigError, TelemetrySettings, read_settings
from telemetry.tracing.attributes import INSTRUMENTATION, messaging_system
from telemetry.tracing.collector import CollectorState
from telemetry.tracing.handlers import ProducerSpans
from telemetry.tracing.providers import build_provider, flush_within, sdk_disabled
from telemetry.tracing.service import Service
from telemetry.wiring.concern import Concern

logger = logging.getLogger("telemetry.producer")


class PublishHooks:
    """The process's ``before_task_publish``/``after_task_publish`` receivers and their state."""

    def __init__(self) -> None:
        self.apps: dict[int, tuple[Celery, CollectorRegistry]] = {}
        self.services: dict[int, Service] = {}
        self.recorder: PublishRecorder | None = None
        self.spans: ProducerSpans | None = None
        self.otlp: ProducerMetrics | None = None
        self.configured = False
        self._counters: dict[int, Counter] = {}
        self._lock = threading.Lock()
        self.receivers: tuple[receivers.Receiver, ...] = (
            (before_task_publish, self.on_before_task_publish, "telemetry.before_task_publish"),
            (after_task_publish, self.on_after_task_publish, "telemetry.after_task_publish"),
        )

    def add(
        self, app: Celery, registry: CollectorRegistry | None, service: Service | None = None
    ) -> None:
        """Count this app's publishes in ``registry`` (the default registry if None)."""
        if not self.apps:
            receivers.connect(self.receivers)
        self.apps[id(app)] = (app, registry if registry is not None else REGISTRY)
        self.services[id(app)] = service or Service()

    def remove(self, app: Celery) -> None:
        self.services.pop(id(app), None)
        if self.apps.pop(id(app), None) is not None and not self.apps:
            receivers.disconnect(self.receivers)
            if self.otlp is not None:
                self.otlp.stop()
            self.recorder = self.spans = self.otlp = None
            self.configured = False
            self.__dict__.pop("countdown", None)  # built again for the apps installed next

    def take_over(self) -> None:
        """A worker's process counts and traces its publishes its own way: nothing until
        its metrics hand a recorder (:meth:`count_with`) and its tracing spans (:meth:`trace_with`)."""
        self.recorder, self.spans, self.configured = None, None, True

    def count_with(self, recorder: PublishRecorder) -> None:
        self.recorder = recorder

    def trace_with(self, spans: ProducerSpans) -> None:
        self.spans = spans

    def on_before_task_publish(
        self,
        sender: Any = None,
        headers: dict[str, Any] | None = None,
        routing_key: str | None = None,
        body: Any = None,
        **_: Any,
    ) -> None:
        if not self.configured:
            self._configure()
        if headers is not None and headers.get("eta") is not None:
            self._check_countdown(sender, headers["eta"])
        if self.recorder is not None:
            self.recorder(sender=sender, headers=headers, routing_key=routing_key, body=body)
        if self.spans is not None:
            self.spans.on_before_task_publish(
                sender=sender, headers=headers, routing_key=routing_key
            )

    def on_after_task_publish(self, headers: dict[str, Any] | None = None, **_: Any) -> None:
        if self.spans is not None:
            self.spans.on_after_task_publish(headers=headers)

    def _configure(self) -> None:
        """At the first publish of a process that is no worker: read the settings and start."""
        with self._lock:
            if self.configured:
                return
            self.configured = True
            try:
                settings = read_settings(TelemetrySettings)
            except ConfigError as exc:
                logger.error("%s; no telemetry in this process", exc)
                return
            if not settings.telemetry_enabled or not self.apps:
                return
            self.recorder = PublishRecorder(
                self._count,
                settings.metrics_max_task_names,
                keep_argsrepr=settings.trace_task_args,
            )
            key, (app, _) = next(iter(self.apps.items()))
            system = messaging_system(driver_type(app))
            service = self.services[key].for_app(app)
            self.otlp = ProducerMetrics(self._published_counter, system, service)
            self.otlp.start()
            if not sdk_disabled():
                self.spans = ProducerSpans(
                    _process_provider(service).get_tracer(INSTRUMENTATION), system
                )

    @cached_property
    def countdown(self) -> CountdownCheck | None:
        """At the first message with an ETA: the check against the shortest visibility
        timeout of the installed apps' Redis brokers; None when none is Redis."""
        timeouts = [
            visibility_timeout(app) for app, _ in list(self.apps.values()) if redis_broker(app)
        ]
        return CountdownCheck(min(timeouts)) if timeouts else None

    def _check_countdown(self, task: Any, eta: Any) -> None:
        """Never raises into the publish: a failure is one warning, and no more checks."""
        try:
            if self.countdown is not None:
                self.countdown.check(str(task), eta)
        except Exception as exc:
            self.__dict__["countdown"] = None
            logger.warning("the ETA check at publish is off: %s: %s", type(exc).__name__, exc)

    def _published_counter(self) -> Counter | None:
        """Any one of the counters: each installed app's registry counts every publish."""
        return next(iter(list(self._counters.values())), None)

    def _count(self, queue: str, task: str) -> None:
        """Once in each distinct registry of the installed apps."""
        registries = {id(registry): registry for _, registry in list(self.apps.values())}
        for key, registry in registries.items():
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = task_published(registry)
            counter.labels(queue, task).inc()


def _process_provider(service: Service) -> TracerProvider:
    """The process's SDK provider; a new global one from ``OTEL_*`` if it has none."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    state = CollectorState()
    provider = build_provider(state, service)
    trace.set_tracer_provider(provider)
    atexit.register(flush_within, provider, state)
    return provider


#: The process's hooks.
PUBLISH_HOOKS = PublishHooks()


class Publishing(Concern):
    """One app's place in the publish hooks; a worker of it takes them over at start."""

    def __init__(self, registry: CollectorRegistry | None, service: Service | None = None) -> None:
        """``registry``: where this app's publishes are counted outside a worker;
        ``service``: the service defaults ``install`` was given."""
        self.registry = registry
        self.service = service

    def install(self, app: Celery) -> None:
        PUBLISH_HOOKS.add(app, self.registry, self.service)

    def uninstall(self, app: Celery) -> None:
        PUBLISH_HOOKS.remove(app)

    def start(self, worker: Any) -> None:
        PUBLISH_HOOKS.take_over()
