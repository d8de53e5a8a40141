"""The producer-side receiver: publish-time stamp, argsrepr scrubbing, bounded task names."""

from __future__ import annotations

import time

from telemetry.messages import PUBLISHED_AT_HEADER
from telemetry.metrics.publish import PublishRecorder


def publish(recorder: PublishRecorder, task: str, **headers: object) -> dict[str, object]:
    message_headers: dict[str, object] = {"id": "1", "task": task, **headers}
    recorder(
        sender=task, headers=message_headers, routing_key="default", body=(["a", "b"], {"k": 1}, {})
    )
    return message_headers


def test_every_publish_is_stamped_and_restamped() -> None:
    recorder = PublishRecorder(None)
    headers = publish(recorder, "t", **{PUBLISHED_AT_HEADER: 1.0})
    assert abs(float(headers[PUBLISHED_AT_HEADER]) - time.time()) < 5  # type: ignore[arg-type]


def test_argument_reprs_are_replaced_by_counts_unless_asked_to_keep_them() -> None:
    scrubbed = publish(
        PublishRecorder(None), "t", argsrepr="('secret', 'b')", kwargsrepr="{'k': 1}"
    )
    assert (scrubbed["argsrepr"], scrubbed["kwargsrepr"]) == ("<2 args>", "<1 kwargs>")
    kept = publish(PublishRecorder(None, keep_argsrepr=True), "t", argsrepr="('secret', 'b')")
    assert kept["argsrepr"] == "('secret', 'b')"


def test_task_names_beyond_the_cap_count_as_other_and_probes_not_at_all() -> None:
    counted: list[tuple[str, str]] = []
    recorder = PublishRecorder(lambda queue, task: counted.append((queue, task)), max_task_names=2)
    for name in ("a", "b", "c", "a"):
        publish(recorder, name)
    publish(recorder, "health_check_task", **{"x-jobpilot-probe": "1"})
    assert counted == [("default", "a"), ("default", "b"), ("default", "other"), ("default", "a")]
