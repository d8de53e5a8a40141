"""Argument values out of what the operator API shows.

    redact("Can't retry t[1] args:('secret',) kwargs:{}", (1, 0))
    # "Can't retry t[1] args:<1 args> kwargs:<0 kwargs>"

Celery's ``MaxRetriesExceededError`` (``retry()`` without ``exc``, once
``max_retries`` is used up) puts the task's arguments into its message,
``Can't retry {name}[{id}] args:{args} kwargs:{kwargs}``, and so into the
traceback's last line. The text from ``args:`` on is replaced by counts, to the
end of the message (an argument's repr may span lines). A message or traceback
with no such text is returned unchanged.

:func:`public_envelope` drops the body, ``argsrepr`` and ``kwargsrepr`` from a
message envelope shown to an operator.
"""

from __future__ import annotations

import re
from typing import Any

_MAX_RETRIES = re.compile(r"(Can't retry [^\n]*?\[[^\]\n]*\] args:)")
#: Envelope headers that carry argument text (Celery's reprs of the arguments).
ARGUMENT_HEADERS = ("argsrepr", "kwargsrepr")


def redact(text: str | None, arguments: tuple[int, int] | None) -> str | None:
    """``text`` with a MaxRetriesExceededError's argument text replaced by counts."""
    if not text or "args:" not in text:
        return text
    matches = list(_MAX_RETRIES.finditer(text))
    if not matches:
        return text
    found = matches[-1]  # the last one: the exception that ended the task
    args, kwargs = arguments if arguments is not None else ("?", "?")
    return f"{text[: found.end()]}<{args} args> kwargs:<{kwargs} kwargs>"


def public_envelope(envelope: Any) -> Any:
    """A parsed envelope without its body and argument reprs; anything else as is."""
    if not isinstance(envelope, dict):
        return None
    shown = {key: value for key, value in envelope.items() if key != "body"}
    headers = shown.get("headers")
    if isinstance(headers, dict):
        shown["headers"] = {k: v for k, v in headers.items() if k not in ARGUMENT_HEADERS}
    return shown
