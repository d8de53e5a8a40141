"""Tracer providers and exporters from the standard ``OTEL_*`` variables, prefork-correct.

In a worker, nothing exports from the processes that run tasks:

* the main process starts the worker's span export process
  (``telemetry.tracing.export.relay``, ``telemetry.tracing.export.process``) before the pool forks,
  and keeps a provider to itself for the few spans only it can record (hard
  time limits, revocations, lost pool processes);
* each pool process installs the global provider in ``worker_process_init`` (it
  can be set once per process and is inherited through fork); every span it
  ends goes to the export process at once, and the ``run`` spans are lean
  (``telemetry.tracing.run_span``);
* the export process exports with :func:`exporter_from_environment`, behind
  ``GuardedExporter`` (``telemetry.tracing.collector``).

Any other process gets a provider that exports itself from
``telemetry.install(app)`` (:func:`build_provider`), unless it already has an
SDK provider, which is then reused.

Variables: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (over the
defaults of ``telemetry.tracing.service``), ``OTEL_TRACES_SAMPLER``/``_ARG``,
``OTEL_EXPORTER_OTLP_ENDPOINT``/``_PROTOCOL`` (HTTP/protobuf by default),
``OTEL_TRACES_EXPORTER=otlp|console|none`` (``none`` still creates spans and
propagates context, and starts no export process), ``OTEL_SDK_DISABLED=true``
(no tracing at all) and ``OTEL_BSP_*`` (``OTEL_BSP_SCHEDULE_DELAY`` is 1000 ms
here when unset).

Flushes are bounded at 2 s: the SDK's ``force_flush`` ignores its timeout, so it
runs on a helper thread joined for at most that long, and the exporter's own
timeout is 1 s. After a failed export, a "collector unreachable until T" value
(``CollectorState`` in ``telemetry.tracing.collector``, shared by forked processes) makes batches drop without
a network attempt for 30 s, and exit flushes are skipped meanwhile: a dead
collector costs one attempt per 30 s, and up to 30 s of spans are dropped
after it recovers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.semconv._incubating.attributes.host_attributes import HOST_NAME
from opentelemetry.semconv.attributes.service_attributes import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_VERSION,
)
from opentelemetry.semconv.attributes.telemetry_attributes import (
    TELEMETRY_DISTRO_NAME,
    TELEMETRY_DISTRO_VERSION,
)

from telemetry.settings import ConfigError
from telemetry.tracing.collector import CollectorState, GuardedExporter, quiet_export_failures
from telemetry.tracing.service import Service
from telemetry.version import __version__

logger = logging.getLogger("telemetry.tracing.providers")

#: The distribution these spans come from (``telemetry.distro.name``).
DISTRIBUTION = "jobpilot-telemetry"
#: Our own resource key: the Celery node name of the worker whose process this is.
WORKER_HOSTNAME = "celery.worker.hostname"
DEFAULT_SCHEDULE_DELAY_MILLIS = 1000
DEFAULT_MAX_EXPORT_BATCH_SIZE = 512
FLUSH_TIMEOUT_SECONDS = 2.0
#: Below the flush bound, so an exiting process learns of a failure (and shares
#: it) before it exits; the exporter retries within this deadline.
EXPORT_TIMEOUT_SECONDS = 1.0
TRUE_VALUES = ("true", "1", "yes")
_Number = TypeVar("_Number", int, float)


def sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() in TRUE_VALUES


def exporter_from_environment(records: bool = False) -> SpanExporter | None:
    """The exporter ``OTEL_TRACES_EXPORTER`` names; None for ``none``. ``records``: for
    OTLP/HTTP, the one that encodes run records itself, where the installed exporter is
    the release it was written for (``telemetry.tracing.export.encoder``)."""
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if name == "none":
        return None
    batching_from_environment()  # refused here, at the worker's start, when unusable
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ConfigError("OTEL_TRACES_EXPORTER", "must be otlp, console or none")
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or ""
    ).strip() or "http/protobuf"
    timeout = None if os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") else EXPORT_TIMEOUT_SECONDS
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if records:
            from telemetry.tracing.export.encoder import RecordExporter, contained

            if contained():
                return RecordExporter(timeout=timeout)
        return OTLPSpanExporter(timeout=timeout)
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "grpc needs the extra: pip install 'jobpilot-telemetry[grpc]'",
            ) from None
        exporter: SpanExporter = GrpcSpanExporter(timeout=timeout)
        return exporter
    raise ConfigError("OTEL_EXPORTER_OTLP_PROTOCOL", "must be http/protobuf or grpc")


def worker_resource(service: Service, worker_hostname: str | None = None) -> Resource:
    """This process's resource: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
    over our defaults, key by key (``Resource.create`` alone lets given attributes
    win over the variables)."""
    hostname = socket.gethostname()
    defaults: dict[str, Any] = {
        SERVICE_NAME: service.name,
        SERVICE_VERSION: service.version,
        SERVICE_INSTANCE_ID: f"{hostname}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        HOST_NAME: hostname,
        WORKER_HOSTNAME: worker_hostname,
        TELEMETRY_DISTRO_NAME: DISTRIBUTION,
        TELEMETRY_DISTRO_VERSION: __version__,
    }
    configured = OTELResourceDetector().detect().attributes
    return Resource.create(
        {key: value for key, value in defaults.items() if value and key not in configured}
    )


def schedule_delay_millis() -> float | None:
    """The batch processor's delay: ``OTEL_BSP_SCHEDULE_DELAY`` (the SDK reads it), else ours."""
    return None if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") else DEFAULT_SCHEDULE_DELAY_MILLIS


@dataclass(frozen=True)
class Batching:
    """When the export process posts a batch: at ``max_spans`` or ``delay_seconds`` after its first."""

    max_spans: int
    delay_seconds: float


def batching_from_environment() -> Batching:
    """``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` (default 512) and ``OTEL_BSP_SCHEDULE_DELAY`` (ms)."""
    return Batching(
        max_spans=_positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", int, DEFAULT_MAX_EXPORT_BATCH_SIZE),
        delay_seconds=_positive(
            "OTEL_BSP_SCHEDULE_DELAY", float, float(DEFAULT_SCHEDULE_DELAY_MILLIS)
        )
        / 1000,
    )


def _positive(variable: str, parse: Callable[[str], _Number], default: _Number) -> _Number:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value: _Number | None = parse(raw)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise ConfigError(variable, f"must be a positive number, not {raw!r}")
    return value


def build_provider(state: CollectorState, service: Service) -> TracerProvider:
    """A provider that exports from this process: for producers (``telemetry.install``)."""
    provider = TracerProvider(resource=worker_resource(service))
    quiet_export_failures()
    exporter = exporter_from_environment()
    if exporter is not None:
        provider.add_span_processor(
            BatchSpanProcessor(
                GuardedExporter(exporter, state), schedule_delay_millis=schedule_delay_millis()
            )
        )
    return provider


def bounded(call: Callable[[], object], seconds: float) -> bool:
    """Run ``call`` on a helper thread joined for at most ``seconds``; True if it finished."""
    helper = threading.Thread(target=call, name="span-flush", daemon=True)
    helper.start()
    helper.join(seconds)
    return not helper.is_alive()


def flush_within(
    provider: TracerProvider, state: CollectorState, seconds: float = FLUSH_TIMEOUT_SECONDS
) -> bool:
    """Flush (bounded, see :func:`bounded`); skipped while the collector is down."""
    if not state.reachable():
        return False
    return bounded(provider.force_flush, seconds)
