"""Judges one raw queue item before kombu builds a Message from it.

A stock worker exits on a non-JSON item, a JSON array, a 100k-deep document or
a body that is not valid base64, loops on a ``task`` header without ``id`` and
crashes in ``Request`` on a body that is not ``[args, kwargs, embed]``. This
module turns each of those into a :class:`Verdict` with a dead-letter reason.

What "could not run" means follows the app's ``accept_content`` (content
types, as :func:`kombu.serialization.prepare_accept_content` gives them):
kombu's Redis envelope is JSON whatever the body's serializer, so the size,
the envelope, the headers and the body's transfer encoding are checked for
every item; a content type the app does not accept is refused; and only a
JSON body is parsed here, to check it is ``[args, kwargs, embed]``. Any other
accepted body (msgpack, yaml, ...) is decoded by kombu in the worker, whose
decode errors the consumer dead-letters (``telemetry.deadletters.consumer``)
and whose shape the Request checks (``telemetry.deadletters.request``).

It uses kombu's own JSON decoder for the envelope, so an accepted item is
handed on already parsed, exactly as kombu would have parsed it.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from dataclasses import dataclass
from typing import Any

from kombu.compression import decompress
from kombu.utils.json import loads as kombu_loads

from telemetry.deadletters.records import Reason

JSON_CONTENT_TYPE = "application/json"
#: Celery's default ``accept_content``, as content types.
JSON_ONLY: frozenset[str] = frozenset({JSON_CONTENT_TYPE})
ACCEPTED_ENCODINGS = (None, "utf-8", "utf8", "binary")
PIDBOX_SUFFIX = ".pidbox"


@dataclass(frozen=True)
class Verdict:
    """``payload`` when the item may be delivered, else ``reason`` (and what is known)."""

    payload: dict[str, Any] | None = None
    reason: Reason | None = None
    task: str | None = None
    id: str | None = None


def is_control_queue(queue: str) -> bool:
    """kombu's pidbox queues carry control replies, not task messages."""
    return queue.endswith(PIDBOX_SUFFIX)


def judge(
    item: bytes | str,
    max_bytes: int,
    *,
    task_message: bool = True,
    accept: frozenset[str] | None = JSON_ONLY,
) -> Verdict:
    """Accept or classify one item exactly as popped from a queue list.

    ``accept``: the content types the app accepts (None: any, as Celery takes
    ``accept_content=None``). With ``task_message=False`` (control replies) only
    the size and the envelope are checked; task headers and body shape are not
    required.
    """
    raw = item.encode("utf-8", "surrogateescape") if isinstance(item, str) else item
    if len(raw) > max_bytes:
        return Verdict(reason=Reason.TOO_LARGE)
    try:
        envelope = kombu_loads(raw.decode("utf-8"))
    except RecursionError:
        return Verdict(reason=Reason.BAD_ENVELOPE)
    except (UnicodeDecodeError, ValueError, TypeError):
        return Verdict(reason=Reason.NOT_JSON)
    if not task_message:
        return _judge_control(envelope)
    return judge_envelope(envelope, accept)


def _judge_control(envelope: Any) -> Verdict:
    if not isinstance(envelope, dict) or not isinstance(envelope.get("properties"), dict):
        return Verdict(reason=Reason.BAD_ENVELOPE)
    if "delivery_tag" not in envelope["properties"]:
        return Verdict(reason=Reason.BAD_ENVELOPE)
    return Verdict(payload=envelope)


def judge_envelope(envelope: Any, accept: frozenset[str] | None = JSON_ONLY) -> Verdict:
    """Accept or classify a parsed envelope (kombu's Redis message format)."""
    if not isinstance(envelope, dict):
        return Verdict(reason=Reason.BAD_ENVELOPE)
    headers = envelope.get("headers")
    properties = envelope.get("properties")
    if not isinstance(headers, dict) or not isinstance(properties, dict):
        return Verdict(reason=Reason.BAD_ENVELOPE)
    task, task_id = headers.get("task"), headers.get("id")
    name = task if isinstance(task, str) and task else None
    ident = task_id if isinstance(task_id, str) and task_id else None

    def reject(reason: Reason) -> Verdict:
        return Verdict(reason=reason, task=name, id=ident)

    if not _routable(properties):
        return reject(Reason.BAD_ENVELOPE)
    if name is None or ident is None:
        return reject(Reason.MISSING_HEADER)
    if not _headers_well_formed(headers):
        return reject(Reason.BAD_ENVELOPE)
    content_type = envelope.get("content-type")
    if not isinstance(content_type, str) or (accept is not None and content_type not in accept):
        return reject(Reason.CONTENT_TYPE)
    if envelope.get("content-encoding") not in ACCEPTED_ENCODINGS:
        return reject(Reason.CONTENT_TYPE)
    body = _decode_body(envelope.get("body"), properties.get("body_encoding"), headers)
    if body is None:
        return reject(Reason.BAD_ENVELOPE)
    if content_type == JSON_CONTENT_TYPE and not _is_json_task_body(body):
        return reject(Reason.BAD_BODY)
    return Verdict(payload=envelope, task=name, id=ident)


def _routable(properties: dict[str, Any]) -> bool:
    """What kombu's Redis QoS stores in ``unacked`` and restores from: a string
    delivery tag and the exchange and routing key as strings."""
    tag, delivery_info = properties.get("delivery_tag"), properties.get("delivery_info")
    return (
        isinstance(tag, str)
        and bool(tag)
        and isinstance(delivery_info, dict)
        and isinstance(delivery_info.get("exchange"), str)
        and isinstance(delivery_info.get("routing_key"), str)
    )


def _is_dict_or_none(value: Any) -> bool:
    return value is None or isinstance(value, dict)


def _headers_well_formed(headers: dict[str, Any]) -> bool:
    """The header values Celery's Request unpacks without guarding."""
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (
        isinstance(timelimit, list | tuple)
        and len(timelimit) == 2
        and all(v is None or isinstance(v, int | float) for v in timelimit)
    ):
        return False
    retries = headers.get("retries", 0)
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool)):
        return False
    return all(
        headers.get(key) is None or isinstance(headers.get(key), str)
        for key in ("shadow", "eta", "expires", "root_id", "parent_id", "group", "compression")
    )


def _decode_body(body: Any, encoding: Any, headers: dict[str, Any]) -> bytes | None:
    """The body's bytes, or None when it cannot be decoded as declared.

    kombu decodes base64 leniently (it drops invalid characters), which can turn
    garbage into a crash later; ``validate=True`` refuses it here instead.
    """
    if not isinstance(body, str):
        return None
    if encoding == "base64":
        try:
            data = b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return None
    elif encoding is None:
        data = body.encode("utf-8", "surrogateescape")
    else:
        return None
    compression = headers.get("compression")
    if compression:
        try:
            data = decompress(data, compression)
        except Exception:
            return None
    return data


def _is_json_task_body(data: bytes) -> bool:
    try:
        body = json.loads(data.decode("utf-8"))
    except (RecursionError, UnicodeDecodeError, ValueError):
        return False
    return is_task_body(body)


def is_task_body(body: Any) -> bool:
    """A decoded task message body (protocol 2) is the triple ``[args, kwargs, embed]``:
    args a sequence, kwargs a mapping with string keys, embed a mapping or None."""
    return (
        isinstance(body, list | tuple)
        and len(body) == 3
        and isinstance(body[0], list | tuple)
        and isinstance(body[1], dict)
        and all(isinstance(key, str) for key in body[1])
        and _is_dict_or_none(body[2])
    )
