"""A process that only publishes sends messaging.client.sent.messages: its own export, or its SDK's."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import redis_url
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.tracing import run_as_producer

pytestmark = pytest.mark.integration

PUBLISH_FOUR = (
    "import telemetry\n"
    "from worker.celery_app import app\n"
    "telemetry.install(app)\n"
    "for n in range(3):\n"
    "    app.send_task('briefing_compile', args=['t', []])\n"
    "app.send_task('agent_plan_step', args=['r', 1])\n"
)


def producer_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url(),
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_EXPORTER": "none",
    }


def sent(receiver: OtlpReceiver) -> dict[tuple[str, str, str], float]:
    return {
        (
            p.attributes["messaging.destination.name"],
            p.attributes["celery.task.name"],
            p.attributes["messaging.operation.name"],
        ): p.value
        for p in receiver.latest("messaging.client.sent.messages").values()
    }


def test_a_producer_exports_its_sends_at_exit(
    redis_client: redis.Redis, receiver: OtlpReceiver
) -> None:
    # Given a producer with OTLP metrics on and the default 60 s interval, when it publishes
    # four tasks and exits, then its last export carries them
    run_as_producer(producer_env(receiver), PUBLISH_FOUR)
    assert sent(receiver) == {
        ("briefings", "briefing_compile", "send"): 3,
        ("agents", "agent_plan_step", "send"): 1,
    }
    (point, *_) = receiver.metric_points("messaging.client.sent.messages")
    assert (point.unit, point.scope, point.attributes["messaging.system"]) == (
        "{message}",
        "jobpilot.telemetry",
        "redis",
    )


def test_a_producer_with_an_sdk_meter_provider_sends_through_it(
    redis_client: redis.Redis, receiver: OtlpReceiver
) -> None:
    # Given a producer whose SDK meter provider is set up first, as opentelemetry-distro does
    setup = (
        "from opentelemetry import metrics\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader\n"
        "from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter\n"
        "from opentelemetry.sdk.resources import Resource\n"
        "reader = PeriodicExportingMetricReader(OTLPMetricExporter())\n"
        "resource = Resource.create({'service.name': 'web'})\n"
        "metrics.set_meter_provider(MeterProvider([reader], resource=resource))\n"
    )
    # When it publishes and exits
    run_as_producer(producer_env(receiver), setup + PUBLISH_FOUR)
    # Then the count went out with the provider's own export, in one request, its resource
    assert sent(receiver)[("briefings", "briefing_compile", "send")] == 3
    assert receiver.metric_requests == 1
    points = receiver.metric_points("messaging.client.sent.messages")
    assert {p.resource["service.name"] for p in points} == {"web"}
