"""The queue-wait SLO: its recording rules and multi-window burn-rate alerts."""

from __future__ import annotations

from typing import Any

from prometheus_client.utils import floatToGoString

from dashboards.config import selector
from dashboards.rules import alert, record


def slo_windows(config: dict[str, Any]) -> list[str]:
    slo = config["slo"]["queueWait"]
    windows: list[str] = []
    for level in (*slo["page"], *slo["ticket"]):
        for window in (level["short"], level["long"]):
            if window not in windows:
                windows.append(window)
    return windows


def slo_rules(config: dict[str, Any]) -> dict[str, Any]:
    # The exposition's own spelling of the bound (30 -> "30.0").
    le = floatToGoString(float(config["slo"]["queueWait"]["thresholdSeconds"]))  # type: ignore[no-untyped-call]
    s_bucket = selector(config, f'le="{le}"')
    s = selector(config)
    slo = config["slo"]["queueWait"]
    budget = round(1 - float(slo["target"]), 10)
    recording = [
        record(
            f"queue:celery_task_queue_wait_slo_burn:rate{window}",
            f"(\n  1 - sum by (queue) (rate(celery_task_queue_wait_seconds_bucket{s_bucket}[{window}]))\n"
            f"    / sum by (queue) (rate(celery_task_queue_wait_seconds_count{s}[{window}]))\n"
            f") / {budget}",
        )
        for window in slo_windows(config)
    ]

    def burn(levels: list[dict[str, Any]]) -> str:
        return "\nor\n".join(
            f"(queue:celery_task_queue_wait_slo_burn:rate{level['long']} > {level['burnRate']}\n"
            f" and queue:celery_task_queue_wait_slo_burn:rate{level['short']} > {level['burnRate']})"
            for level in levels
        )

    description = (
        "Tasks on {{ $labels.queue }} wait longer than "
        f"{slo['thresholdSeconds']} s too often: the error budget of the {slo['target']:.2%} "
        "objective is burning faster than the burn-rate thresholds allow."
    )
    return {
        "groups": [
            {"name": "celery-slo.rules", "rules": recording},
            {
                "name": "celery-slo.alerts",
                "rules": [
                    alert(
                        config,
                        "CeleryQueueWaitSLOBurn",
                        burn(slo["page"]),
                        "critical",
                        "Queue wait SLO on {{ $labels.queue }} is burning fast.",
                        description,
                        duration=slo["for"],
                    ),
                    alert(
                        config,
                        "CeleryQueueWaitSLOBurn",
                        burn(slo["ticket"]),
                        "ticket",
                        "Queue wait SLO on {{ $labels.queue }} is burning.",
                        description,
                        duration=slo["for"],
                    ),
                ],
            },
        ]
    }
