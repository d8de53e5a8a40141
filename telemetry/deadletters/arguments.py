"""Whether a message's arguments bind to its task's signature, judged in the worker.

    problem = arguments_problem(task, args, kwargs)    # None, or why they do not bind

Celery checks the arguments when a producer calls ``apply_async`` on a task that
types them (``typing``, on unless the task or ``Celery(strict_typing=False)``
turns it off). A message sent by name (``send_task``), by another language or
pushed raw skips that check, and a ``TypeError`` from the body could not be told
from a bug in it. The worker makes the same check again, with the same function
Celery's producer calls: the task's ``__header__``, a function with the task's
signature and an empty body (``celery.utils.functional.head_from_fun``), which
also leaves out ``self`` for ``bind=True`` tasks. A class-based task has no
header; its bound ``run`` method's signature is used. A task whose ``run``
takes ``*args, **kwargs`` binds anything, and one with ``typing=False`` is not
checked, as Celery's producer does not check it.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[..., Any]

#: A class-based task's signature check, built once per task.
_run_checks: weakref.WeakKeyDictionary[Any, Check] = weakref.WeakKeyDictionary()


def _accept_anything(*_: Any, **__: Any) -> None:
    return None


def _check_of(task: Any) -> Check:
    header: Check | None = getattr(task, "__header__", None)
    if header is not None:
        return header
    check = _run_checks.get(task)
    if check is None:
        try:
            check = inspect.signature(task.run).bind
        except (TypeError, ValueError):  # no signature to read (a builtin, say)
            check = _accept_anything
        _run_checks[task] = check
    return check


def arguments_problem(task: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """Why ``args``/``kwargs`` do not bind to ``task``'s signature; None when they do."""
    if not task.typing:
        return None
    try:
        _check_of(task)(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    return None
