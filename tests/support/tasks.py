"""Tasks only the test suite registers (``celery worker --include tests.support.tasks``)."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from celery.signals import task_received

from worker.celery_app import app
from worker.db.bridge import run_async


@app.task(name="tests.sleep_then_record", ignore_result=False, max_retries=3)
def sleep_then_record(key: str, seconds: float) -> int:
    """Sleep, then write ``key`` like example_task does (idempotent row)."""
    from worker.tasks.example import _record

    time.sleep(seconds)
    url = app.conf.jobpilot_settings.effective_database_url
    return run_async(_record(url, key, "test", "default", "sleep"))


@app.task(name="tests.kill_own_process", ignore_result=False, max_retries=2)
def kill_own_process(key: str) -> None:
    """Lose the pool process every time: SIGKILL itself mid-task."""
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="tests.loaded_modules", ignore_result=False)
def loaded_modules() -> dict[str, Any]:
    """What this pool process has imported, for the lazy-import test."""
    return {"pid": os.getpid(), "modules": sorted(sys.modules)}


@app.task(name="tests.fail")
def fail(n: int) -> None:
    raise ValueError("this task always fails")


@app.task(name="tests.user_span", ignore_result=False)
def user_span(n: int) -> int:
    """Opens a span of its own under the current one, and tags the current one."""
    from opentelemetry import trace

    trace.get_current_span().set_attribute("tests.n", n)
    with trace.get_tracer("tests.user").start_as_current_span("user.work"):
        return n


@app.task(bind=True, name="tests.retry_twice", max_retries=5)
def retry_twice(self: Any, key: str) -> str:
    """Retries twice (0.1 s apart), then succeeds."""
    if self.request.retries < 2:
        raise self.retry(countdown=0.1)
    return key


def _sleep_through_soft_limit(seconds: float) -> None:
    """Sleep ``seconds``, through the soft time limit: only the hard limit stops it."""
    from celery.exceptions import SoftTimeLimitExceeded

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            continue


@app.task(name="tests.ignore_soft_limit")
def ignore_soft_limit(seconds: float) -> None:
    """Keeps running through the soft time limit, so only the hard limit stops it."""
    _sleep_through_soft_limit(seconds)


@app.task(name="tests.enqueue_child")
def enqueue_child() -> None:
    """Enqueues another task from inside a task: one connected trace."""
    app.send_task("briefing_compile", args=["nested", ["text"]])


@app.task(name="tests.own_headers", bind=True, ignore_result=False)
def own_headers(self: Any) -> dict[str, Any]:
    """The telemetry headers this task's message arrived with."""
    return {
        name: getattr(self.request, name, None)
        for name in ("traceparent", "x-jobpilot-published-at")
    }


def _redis() -> Any:
    """The broker, where the app's connection finds it (behind Sentinel too)."""
    from worker.redis_client import task_redis

    return task_redis(app)


@app.task(name="tests.count_run")
def count_run(key: str) -> int:
    """Counts its own executions in the Redis key ``key``."""
    return int(_redis().incr(key))


@app.task(name="tests.hold", ignore_result=False)
def hold(key: str, seconds: float) -> None:
    """Runs until the Redis key ``key`` exists, at most ``seconds``."""
    client = _redis()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not client.exists(key):
        time.sleep(0.05)


@app.task(bind=True, name="tests.retry_n", max_retries=5)
def retry_n(self: Any, times: int) -> int:
    """Retries ``times`` times (0.1 s apart), then succeeds."""
    if self.request.retries < times:
        raise self.retry(countdown=0.1)
    return int(self.request.retries)


#: Far beyond any cut the fleet test makes. Under the app's short test limits, a task
#: that ends while its worker is cut off has its late ack block the event loop until
#: the link is back; its time-limit timers, still pending, then fire at once while its
#: result is being read, and Celery's prefork pool can exit with an UnpicklingError
#: from the result pipe (seen in 3 of 20 fleet runs). Long limits keep that Celery race
#: out of a test about where held tasks run.
NAP_TIME_LIMIT = 120


@app.task(
    name="tests.nap_then_count", soft_time_limit=NAP_TIME_LIMIT - 1, time_limit=NAP_TIME_LIMIT
)
def nap_then_count(key: str, seconds: float) -> int:
    """Sleeps, then counts its own execution in the Redis key ``key``; out of
    reach of Redis, the count fails within a second instead of hanging."""
    import redis

    time.sleep(seconds)
    client = redis.Redis.from_url(app.conf.broker_url, socket_timeout=1, socket_connect_timeout=1)
    return int(client.incr(key))


@app.task(
    name="tests.always_fail",
    autoretry_for=(ValueError,),
    max_retries=2,
    default_retry_delay=0,
)
def always_fail(token: str) -> None:
    """Fails every attempt; autoretry gives up after 2 retries and re-raises."""
    raise ValueError(f"always fails ({len(token)} chars)")


@app.task(name="tests.fail_first_run")
def fail_first_run(key: str, secret: str) -> int:
    """Fails its first run (no retries), succeeds from the second: a flag in Redis counts runs."""
    runs = int(_redis().incr(key))
    if runs == 1:
        raise ValueError("first run fails")
    return runs


@app.task(bind=True, name="tests.retry_without_exc", max_retries=1, default_retry_delay=0)
def retry_without_exc(self: Any, secret: str) -> None:
    """``retry()`` without ``exc``: Celery raises MaxRetriesExceededError with the arguments."""
    raise self.retry()


@app.task(
    bind=True,
    name="tests.fail_then_succeed",
    autoretry_for=(ValueError,),
    max_retries=2,
    default_retry_delay=0,
)
def fail_then_succeed(self: Any, key: str) -> int:
    """Fails its first attempt, succeeds on the retry."""
    if self.request.retries == 0:
        raise ValueError("first attempt fails")
    return int(self.request.retries)


@app.task(name="tests.reject_it")
def reject_it() -> None:
    from celery.exceptions import Reject

    raise Reject("refused", requeue=False)


@app.task(name="tests.hard_limit_acked", soft_time_limit=0.5, time_limit=1)
def hard_limit_acked(seconds: float) -> None:
    """Killed by its 1 s hard time limit; its message is acknowledged (Celery's default)."""
    _sleep_through_soft_limit(seconds)


@app.task(
    name="tests.hard_limit_requeued",
    soft_time_limit=0.5,
    time_limit=1,
    acks_late=True,
    acks_on_timeout=False,
)
def hard_limit_requeued(key: str, seconds: float) -> int:
    """The first run is killed by the hard limit and requeued; the second returns at once."""
    runs = int(_redis().incr(key))
    if runs == 1:
        _sleep_through_soft_limit(seconds)
    return runs


@app.task(name="tests.fail_with_message")
def fail_with_message(message: str) -> None:
    """Fails its only run (no retries) with ``message`` as the exception's message."""
    raise ValueError(message)


@app.task(name="tests.count_with_result", ignore_result=False)
def count_with_result(key: str) -> int:
    """Counts its own executions in the Redis key ``key`` and stores the count as its result."""
    return int(_redis().incr(key))


@app.task(name="tests.block_event_loop")
def block_event_loop(seconds: float) -> None:
    """Does nothing; receiving it blocks the worker's event loop (see below)."""


@task_received.connect(weak=False, dispatch_uid="tests.block_event_loop")
def _block_event_loop(request: Any = None, **_: Any) -> None:
    """A hook in the main process's event loop that blocks it: what /livez must see."""
    if request is not None and request.name == "tests.block_event_loop":
        time.sleep(float(request.args[0]))


def _note(path: str, key: str, seconds: float) -> str:
    time.sleep(seconds)
    with open(path, "a") as notes:  # one short line per write: appends do not interleave
        notes.write(f"{key} {os.getpid()}\n")
    return key


@app.task(name="tests.note_run")
def note_run(path: str, key: str, seconds: float = 0) -> str:
    """Sleeps, then notes ``key`` and its pool process in the file ``path``: a run that
    needs no broker to be seen."""
    return _note(path, key, seconds)


@app.task(name="tests.note_with_result", ignore_result=False)
def note_with_result(path: str, key: str, seconds: float = 0) -> str:
    """``tests.note_run``, and the key stored as its result."""
    return _note(path, key, seconds)
