"""The worker's bind check: Celery's own producer-side check, made again where messages arrive."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from telemetry.deadletters.arguments import arguments_problem

app = Celery("arguments", set_as_current=False)


@app.task(name="ship", shared=False)
def ship(order: int, *, express: bool = False) -> int:
    return order


@app.task(name="audit", bind=True, shared=False)
def audit(self: Task, order: int) -> int:
    return order


@app.task(name="note", typing=False, shared=False)
def note(text: str) -> str:
    return text


@app.task(name="anything", shared=False)
def anything(*args: Any, **kwargs: Any) -> None:
    return None


class Count(Task):  # type: ignore[misc]
    """A class-based task: Celery gives it no ``__header__``."""

    name = "count"

    def run(self, first: int, second: int = 0) -> int:
        return first + second


count = app.register_task(Count())


def test_arguments_that_bind_pass() -> None:
    assert arguments_problem(ship, [1], {}) is None
    assert arguments_problem(ship, [], {"order": 1, "express": True}) is None
    assert arguments_problem(count, [1], {"second": 2}) is None


def test_arguments_that_do_not_bind_say_why_as_celery_does() -> None:
    assert (
        arguments_problem(ship, [], {}) == "ship() missing 1 required positional argument: 'order'"
    )
    assert "unexpected keyword argument 'fast'" in str(arguments_problem(ship, [1], {"fast": 1}))
    assert "positional argument" in str(arguments_problem(ship, [1, True], {}))
    assert arguments_problem(count, [], {}) == "missing a required argument: 'first'"


def test_a_bound_task_is_checked_without_self() -> None:
    assert arguments_problem(audit, [1], {}) is None
    assert arguments_problem(audit, [1, 2], {}) is not None


def test_untyped_tasks_and_star_signatures_bind_anything() -> None:
    assert arguments_problem(note, [], {"x": 1}) is None
    assert arguments_problem(anything, [1, 2, 3], {"x": 1}) is None
