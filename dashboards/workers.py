"""The overview's "Workers and readiness" row: workers up, readiness per check, the pool."""

from __future__ import annotations

from typing import Any

from dashboards.panels import INSTANCE, QUEUE, Panels


def workers_and_readiness(config: dict[str, Any], panels: Panels) -> None:
    s = config["selectors"]["workerSelector"]
    panels.row("Workers and readiness")
    panels.add(
        "Workers up",
        [(f"sum(up{{{s}, {INSTANCE}}})", "up")],
        kind="stat",
        width=4,
    )
    panels.add(
        "Readiness per check",
        [
            (f"min by (check) (celery_readiness_check_up{{{s}, {INSTANCE}}})", "{{check}}"),
            (f"min(celery_worker_ready{{{s}, {INSTANCE}}})", "ready (all workers)"),
        ],
        width=10,
        description="1 = passing. The minimum over the selected workers.",
    )
    panels.add(
        "Health task round trip and broker ping (p95)",
        [
            (
                f"histogram_quantile(0.95, sum by (instance, le) (rate(celery_health_check_roundtrip_seconds_bucket{{{s}, {INSTANCE}}}[$__rate_interval])))",
                "health task {{instance}}",
            ),
            (
                f"histogram_quantile(0.95, sum by (instance, le) (rate(celery_broker_ping_seconds_bucket{{{s}, {INSTANCE}}}[$__rate_interval])))",
                "broker ping {{instance}}",
            ),
            (
                f"time() - max by (instance) (celery_health_check_last_success_timestamp_seconds{{{s}, {INSTANCE}}})",
                "since last health task {{instance}}",
            ),
        ],
        unit="s",
        width=10,
    )
    panels.add(
        "Workers",
        [
            (
                f"max by (instance, hostname, pool, version) (celery_worker_info{{{s}, {INSTANCE}}})",
                "",
            )
        ],
        kind="table",
        width=12,
    )
    panels.add(
        "Which worker consumes which queue",
        [
            (
                f"max by (instance, queue) (celery_worker_consumed_queue{{{s}, {QUEUE}, {INSTANCE}}})",
                "",
            )
        ],
        kind="table",
        width=12,
    )
