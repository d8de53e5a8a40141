"""A repeated warning is due once per interval, in one process and across forked ones."""

from __future__ import annotations

import multiprocessing

from telemetry.log_throttle import LogThrottle


def test_a_line_is_due_once_per_interval() -> None:
    throttle = LogThrottle(interval=3600)
    assert throttle.due()
    assert not throttle.due()
    every_time = LogThrottle(interval=0)
    assert every_time.due() and every_time.due()


def _due_in_child(throttle: LogThrottle, answers: multiprocessing.Queue[bool]) -> None:
    answers.put(throttle.due())


def test_forked_processes_share_the_interval() -> None:
    # Given a throttle made before forking, whose line a child has just logged
    throttle = LogThrottle(interval=3600)
    fork = multiprocessing.get_context("fork")
    answers: multiprocessing.Queue[bool] = fork.Queue()
    child = fork.Process(target=_due_in_child, args=(throttle, answers))
    child.start()
    child.join(10)
    assert answers.get(timeout=5) is True
    # Then the parent's next line is not due
    assert not throttle.due()
