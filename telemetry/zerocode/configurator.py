"""``OTEL_PYTHON_CONFIGURATOR=jobpilot_telemetry``: no SDK provider is set up before the pool forks.

    OTEL_PYTHON_CONFIGURATOR=jobpilot_telemetry opentelemetry-instrument celery -A app worker

``opentelemetry-distro``'s configurator sets up the SDK's global tracer, meter
and logger providers when the interpreter starts, in the worker's main
process. Every pool process inherits them: its spans are batched and exported
by the pool process itself, and die with it when it recycles; and the
instrumentors that load next take their tracers from that provider for good.
The telemetry already sets up each process of a worker itself: the main
process keeps a provider to itself, each pool process sets up the global one
after the fork and sends every span to the worker's export process, and a
producer or beat sets up an exporting provider at its first publish
(``telemetry.tracing``, ``telemetry.wiring.producer``). So this configurator,
when selected, sets up no provider: the instrumentors hold OpenTelemetry's
proxy tracers, which follow the provider each process sets up later.

It does two more things before the instrumentors load:

* an ``otlp`` exporter over gRPC (``opentelemetry-distro`` makes gRPC the
  default protocol) without the grpc exporter installed is one warning line
  naming the extra, and that signal's export is turned off
  (``OTEL_TRACES_EXPORTER``/``OTEL_METRICS_EXPORTER`` become ``none``, for every
  process of the worker): no crash, and no switch to HTTP;
* ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true`` is one line saying
  that log records are not exported over OTLP: the worker logs to standard output.

Loaded without being selected (``OTEL_PYTHON_CONFIGURATOR`` unset, and listed
before the distro's), or with the ``jobpilot_telemetry`` instrumentor disabled
(``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``), it configures the SDK exactly as
the distro's configurator does: installing the package changes no other
program, and disabling the instrumentor leaves upstream's instrumentations
their usual providers.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from telemetry.zerocode.instrumentor import NAME

logger = logging.getLogger("telemetry.zerocode")

CONFIGURATOR_VARIABLE = "OTEL_PYTHON_CONFIGURATOR"
DISABLED_VARIABLE = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
LOGGING_VARIABLE = "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"
#: The module an OTLP exporter over gRPC needs (the grpc extra installs it).
GRPC_EXPORTER = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
GRPC_EXTRA = "pip install 'jobpilot-telemetry[grpc]'"
#: Per signal: the exporter variable and the telemetry's default for it, the
#: signal's protocol variable, and a word for it.
SIGNALS = (
    ("OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "span"),
    ("OTEL_METRICS_EXPORTER", "none", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "metric"),
)
GENERIC_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
GRPC_MISSING = (
    "telemetry: %s=grpc needs the grpc exporter, which is not installed: %s, "
    "or set %s=http/protobuf; %s export %s off"
)
LOGS_NOT_EXPORTED = (
    "telemetry: %s=true is not acted on under OTEL_PYTHON_CONFIGURATOR=%s: "
    "log records go to standard output, not over OTLP"
)


class TelemetryConfigurator(_OTelSDKConfigurator):
    """The ``opentelemetry_configurator`` entry point ``jobpilot_telemetry``.

    A subclass of the SDK's configurator, as the SDK asks of every distribution's.
    """

    def _configure(self, **kwargs: Any) -> None:
        if not selected(os.environ):
            super()._configure(**kwargs)  # type: ignore[no-untyped-call]
            return
        turn_off_grpc_without_exporter(os.environ)
        if os.environ.get(LOGGING_VARIABLE, "").strip().lower() == "true":
            logger.warning(LOGS_NOT_EXPORTED, LOGGING_VARIABLE, NAME)


def selected(environ: Mapping[str, str]) -> bool:
    """Chosen by ``OTEL_PYTHON_CONFIGURATOR``, with the instrumentor it leaves the SDK to
    not disabled (else no process would set a provider up)."""
    disabled = {name.strip() for name in environ.get(DISABLED_VARIABLE, "").split(",")}
    chosen = environ.get(CONFIGURATOR_VARIABLE, "").strip() == NAME
    return chosen and not disabled & {NAME, "*"}


def grpc_exporter_installed() -> bool:
    try:
        return importlib.util.find_spec(GRPC_EXPORTER) is not None
    except ImportError:
        return False


def turn_off_grpc_without_exporter(environ: MutableMapping[str, str]) -> list[str]:
    """Set to ``none`` each OTLP exporter that would need gRPC without it; one line for them all.

    Returns the exporter variables turned off.
    """
    wanting: list[tuple[str, str, str]] = []
    for exporter, default, protocol, word in SIGNALS:
        names = {name.strip().lower() for name in (environ.get(exporter) or default).split(",")}
        if "otlp" not in names:
            continue
        chosen = next((name for name in (protocol, GENERIC_PROTOCOL) if environ.get(name)), None)
        if chosen is not None and environ[chosen].strip() == "grpc":
            wanting.append((exporter, chosen, word))
    if not wanting or grpc_exporter_installed():
        return []
    protocols = " and ".join(dict.fromkeys(chosen for _, chosen, _ in wanting))
    words = " and ".join(word for _, _, word in wanting)
    verb = "are" if len(wanting) > 1 else "is"
    logger.warning(GRPC_MISSING, protocols, GRPC_EXTRA, protocols, words, verb)
    for exporter, _, _ in wanting:
        environ[exporter] = "none"
    return [exporter for exporter, _, _ in wanting]
