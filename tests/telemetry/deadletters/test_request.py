"""The dead-letter Request in Celery's own per-task subclass, with Celery's stand-in message.

The real worker runs are in ``test_any_app_poison``; these pin what happens in the
main process when the arguments do not bind, including a result backend that fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest.mock import Mock

import pytest
from celery import Celery
from celery.contrib.testing.mocks import TaskMessage
from celery.worker.request import Request, create_request_cls

from telemetry.deadletters.request import NotSubmitted, with_dead_letters
from telemetry.delivery.observers import OBSERVERS, REJECTED, DeliveryObserver
from telemetry.delivery.request import Refused, with_telemetry


class Writer:
    """Stands in for the DeadLetterWriter: what was dead-lettered, and how."""

    def __init__(self) -> None:
        self.written: list[tuple[str, str | None, bool]] = []

    def write_message(
        self, message: Any, reason: Any, task: str | None = None, *, refused: bool = True
    ) -> None:
        self.written.append((str(reason), task, refused))


class Outcomes(DeliveryObserver):
    def __init__(self) -> None:
        self.finished: list[str] = []
        self.started = 0

    def on_started(self, request: Any) -> None:
        self.started += 1

    def on_finished(self, request: Any, outcome: str, exception: BaseException | None) -> None:
        self.finished.append(outcome)


@pytest.fixture
def outcomes() -> Iterator[Outcomes]:
    observer = Outcomes()
    OBSERVERS.add(observer)
    yield observer
    OBSERVERS.remove(observer)


@pytest.fixture
def app() -> Celery:
    app = Celery("request", broker="memory://", backend="cache+memory://", set_as_current=False)

    @app.task(name="ship", shared=False)
    def ship(order: int) -> int:
        return order

    return app


def build(app: Celery, writer: Writer, pool: Any, *args: Any) -> tuple[Any, Mock]:
    """A Request for ``ship(*args)`` as the worker's strategy builds it; and its reject callback."""
    task = app.tasks["ship"]
    base = with_telemetry(with_dead_letters(Request, writer, None), record_args=False)  # type: ignore[arg-type]
    request_class = create_request_cls(base, task, pool, "w@h", None, app=app)
    message = TaskMessage("ship", args=args)
    on_reject = Mock()
    request = request_class(
        message,
        on_reject=on_reject,
        app=app,
        task=task,
        body=message.body,
        headers=message.headers,
        decoded=False,
    )
    return request, on_reject


def test_arguments_that_bind_go_to_the_pool(app: Celery, outcomes: Outcomes) -> None:
    writer, pool = Writer(), Mock()
    request, _ = build(app, writer, pool, 1)
    request.execute_using_pool(pool)
    assert pool.apply_async.call_count == 1
    assert writer.written == [] and outcomes.finished == []


def test_arguments_that_do_not_bind_are_refused_before_the_pool(
    app: Celery, outcomes: Outcomes
) -> None:
    writer, pool = Writer(), Mock()
    request, on_reject = build(app, writer, pool)
    # When the worker hands the request to its pool
    with pytest.raises(NotSubmitted):  # the worker frees the pool slot on this
        request.execute_using_pool(pool)
    # Then the pool never sees it; it is dead-lettered, rejected and ends `rejected`
    pool.apply_async.assert_not_called()
    assert writer.written == [("bad_arguments", "ship", False)]
    assert [call.args[2] for call in on_reject.call_args_list] == [False]
    assert outcomes.finished == [REJECTED] and outcomes.started == 0
    # And a caller waiting on the result learns why, as from Celery's own Reject
    result = app.AsyncResult(request.id)
    assert result.state == "FAILURE"
    assert isinstance(result.result, Refused)
    assert (
        str(result.result)
        == "bad_arguments: ship() missing 1 required positional argument: 'order'"
    )


def test_a_refusal_the_backend_cannot_record_still_rejects_the_message(
    app: Celery,
    outcomes: Outcomes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer, pool = Writer(), Mock()
    request, on_reject = build(app, writer, pool)
    monkeypatch.setattr(app.tasks["ship"].backend, "mark_as_failure", Mock(side_effect=OSError))
    with pytest.raises(NotSubmitted):
        request.execute_using_pool(pool)
    assert writer.written == [("bad_arguments", "ship", False)]
    assert [call.args[2] for call in on_reject.call_args_list] == [False]
    assert outcomes.finished == [REJECTED]
    assert f"could not record the refusal of ship[{request.id}]: OSError" in caplog.text
