"""Raw queue items in kombu's Redis envelope format, built by hand as an attacker would."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

#: ``pickle.dumps(1, protocol=4)`` written out as bytes: the suite never imports pickle.
PICKLED_ONE = b"\x80\x04K\x01."


def envelope(
    task: str | None = "briefing_compile",
    body: bytes | str = b'[["topic", ["some text"]], {}, {"callbacks": null}]',
    *,
    task_id: str | None = "generate",
    queue: str = "default",
    content_type: str = "application/json",
    content_encoding: str = "utf-8",
    encode: bool = True,
    **headers: Any,
) -> dict[str, Any]:
    head: dict[str, Any] = {"lang": "py", "retries": 0, **headers}
    if task is not None:
        head["task"] = task
    if task_id is not None:
        head["id"] = str(uuid.uuid4()) if task_id == "generate" else task_id
    raw_body = body if isinstance(body, bytes) else body.encode()
    return {
        "body": base64.b64encode(raw_body).decode() if encode else body,
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": head,
        "properties": {
            "correlation_id": head.get("id"),
            "delivery_mode": 2,
            "delivery_info": {"exchange": queue, "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def item(**kwargs: Any) -> str:
    return json.dumps(envelope(**kwargs))


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def poison_items(
    task: str = "briefing_compile",
    queue: str = "default",
    too_few_args: bytes = b'[["only-topic"], {}, {}]',
) -> dict[str, str | bytes]:
    """One malformed item of each dead-letter reason, by reason, for ``task`` on ``queue``
    (``too_few_args``: a body whose arguments do not bind to ``task``)."""
    no_id = envelope(task, queue=queue)
    del no_id["headers"]["id"]
    bad_base64 = envelope(task, queue=queue)
    bad_base64["body"] = "abc"  # invalid padding: a stock worker exits on it
    return {
        "not_json": b"\x80 definitely not json",
        "bad_envelope": json.dumps(bad_base64),
        "missing_header": json.dumps(no_id),
        "content_type": item(
            task=task,
            queue=queue,
            body=PICKLED_ONE,
            content_type="application/x-python-serialize",
        ),
        "bad_body": item(task=task, queue=queue, body=b"[1, 2]"),
        "unknown_task": item(task="no_such_task", queue=queue),
        "too_large": b"x" * 10_000_000,  # 10 MB
        "bad_arguments": item(task=task, queue=queue, body=too_few_args),
    }
