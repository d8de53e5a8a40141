"""``python -m telemetry.broker_exporter -A yourmodule``: serve the app's broker state until SIGTERM.

The app is found as ``celery -A`` finds it. Its queues are the ones it declares
(``task_queues``) and its default queue, plus any given with ``-Q``; its
dead-letter list is the one ``telemetry.install(app, extensions=...)`` names.
The bind address is ``METRICS_HOST:BROKER_EXPORTER_PORT``, and the operator API's
``OPS_HOST:OPS_PORT`` (``telemetry.ops``). A bad variable, an
app that cannot be imported, a broker that is not Redis or a taken port is one
line on stderr and exit status 2, as is a bad OTLP metric variable
(``telemetry.metrics.otlp.environment``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from celery import Celery
from celery.app.utils import find_app

from telemetry.broker import app_queues, redis_broker
from telemetry.broker_exporter.exporter import BrokerExporter
from telemetry.extensions import resolve
from telemetry.installation import installed, worker_extensions
from telemetry.logs import configure_logging
from telemetry.settings import ConfigError, TelemetrySettings, read_settings
from telemetry.tracing.service import Service
from telemetry.version import __version__


class Unusable(Exception):
    """The exporter cannot start; ``str()`` is the one line to print."""


def load_app(name: str) -> Celery:
    try:
        app = find_app(name)
    except (ImportError, AttributeError) as exc:
        raise Unusable(f"broker exporter: cannot load the app {name!r}: {exc}") from None
    if not isinstance(app, Celery):
        raise Unusable(f"broker exporter: {name!r} is not a Celery app")
    return app


def build(argv: list[str] | None = None) -> BrokerExporter:
    parser = argparse.ArgumentParser(
        prog="python -m telemetry.broker_exporter", description=__doc__.splitlines()[0]
    )
    parser.add_argument("-A", "--app", required=True, help="the Celery app, as for `celery -A`")
    parser.add_argument(
        "-Q", "--queues", default="", help="comma-separated queues to serve besides the app's own"
    )
    args = parser.parse_args(argv)
    try:
        settings = read_settings(TelemetrySettings)
    except ConfigError as exc:
        raise Unusable(str(exc)) from None
    configure_logging(settings.log_level, settings.log_format)
    app = load_app(args.app)
    if not redis_broker(app):
        raise Unusable("broker exporter: the app's broker is not Redis")
    extra = {queue.strip() for queue in args.queues.split(",") if queue.strip()}
    installation = installed(app)
    extensions = resolve(None) if installation is None else worker_extensions(installation)
    service = (installation.service if installation is not None else Service()).for_app(app)
    try:
        return BrokerExporter(
            app,
            settings,
            app_queues(app) | extra,
            extensions.deadletter_key,
            __version__,
            service,
            exhausted=installation is not None and installation.exhausted is not None,
        )
    except ConfigError as exc:
        raise Unusable(str(exc)) from None
    except OSError as exc:
        raise Unusable(
            f"broker exporter: cannot listen on {settings.metrics_host}:"
            f"{settings.broker_exporter_port} and {settings.ops_host}:{settings.ops_port}: "
            f"{exc.strerror or exc}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    try:
        exporter = build(argv)
    except Unusable as exc:
        print(exc, file=sys.stderr)
        return 2
    stopped = threading.Event()

    def stop(*_: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    exporter.start()
    stopped.wait()
    exporter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
