"""Zero code: ``opentelemetry-instrument celery -A app worker`` for an app that never calls ``install``.

With ``opentelemetry-distro``, ``opentelemetry-instrumentation-celery`` and
``opentelemetry-instrumentation-redis`` installed (test dependencies), a real
Redis, a real prefork worker recycling after every task and a real OTLP/HTTP
receiver. The producer runs under ``opentelemetry-instrument`` too, with the
distro's own configuration, as a team's web process would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.conftest import redis_url
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.scrape import samples_by_labels
from tests.support.worker_process import ROOT, WorkerProcess, free_port, wait_until

pytestmark = pytest.mark.integration

TASKS = 20
BIN = Path(sys.executable).parent
INSTRUMENT = str(BIN / "opentelemetry-instrument")
APP = "tests.support.ledger"
WORKER = [INSTRUMENT, str(BIN / "celery"), "-A", APP, "worker", "-Q", "ledger", "-c", "2"]
WORKER += ["-P", "prefork", "--loglevel", "INFO"]
OURS = "jobpilot.telemetry"
UPSTREAM_CELERY = "opentelemetry.instrumentation.celery"
REDIS_SCOPE = "opentelemetry.instrumentation.redis"
AUTO_INSTRUMENTATION = os.path.join("opentelemetry", "instrumentation", "auto_instrumentation")
#: What the issue names among kombu's own commands; none may make a span.
KOMBU_COMMANDS = ("EVALSHA", "PUBLISH", "ZADD", "HSET", "LPUSH")


def ledger_env(receiver: OtlpReceiver, **extra: str) -> dict[str, str]:
    """The worker's variables as a team would set them: the distro's defaults otherwise."""
    return {
        "LEDGER_BROKER_URL": redis_url(),
        "LEDGER_RESULT_BACKEND": redis_url(),
        "OTEL_PYTHON_CONFIGURATOR": "jobpilot_telemetry",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "READINESS_INTERVAL": "1",
        "METRICS_RENDER_INTERVAL": "0",
        **extra,
    }


def produce(receiver: OtlpReceiver, tasks: int) -> list[str]:
    """Publish ``tasks`` posts from a producer under ``opentelemetry-instrument``; their ids."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LEDGER_BROKER_URL": redis_url(),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    code = (
        f"from {APP} import app\n"
        f"print(' '.join(app.send_task('post', args=[n]).id for n in range({tasks})))\n"
    )
    done = subprocess.run(
        [INSTRUMENT, sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


@dataclass
class Run:
    """What one zero-code worker run left: its spans, /metrics, the export process's environment."""

    receiver: OtlpReceiver
    worker: WorkerProcess
    ids: list[str]
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]]
    export_pythonpath: str
    main_pythonpath: str

    def named(self, name: str, scope: str | None = None) -> list[ReceivedSpan]:
        return [s for s in self.receiver.spans if s.name == name and scope in (None, s.scope)]


def _pythonpath(pid: int) -> str:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [e for e in entries if e.startswith(b"PYTHONPATH=")]
    return found[0].decode().partition("=")[2] if found else ""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """20 posts, each in a pool process of its own (``--max-tasks-per-child 1``)."""
    client = redis.Redis.from_url(redis_url())
    client.flushdb()
    receiver = OtlpReceiver().start()
    worker = WorkerProcess(
        ledger_env(receiver),
        tmp_path_factory.mktemp("zero-code"),
        command=WORKER,
        extra_args=("--max-tasks-per-child", "1"),
    ).start()
    try:
        ids = produce(receiver, TASKS)

        def finished() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
            samples = samples_by_labels(worker.metrics_url)
            done = samples.get("celery_task_finished_total", {})
            key = (("outcome", "succeeded"), ("queue", "ledger"), ("task", "post"))
            return samples if done.get(key) == TASKS else None

        samples = wait_until(finished, 90, message=f"{TASKS} posts finished")
        export = [pid for pid in worker.child_pids() if pid not in worker.pool_pids()]
        assert len(export) == 1, worker.log()[-3000:]
        export_pythonpath, main_pythonpath = _pythonpath(export[0]), _pythonpath(worker.pid)

        def consumed() -> float:
            points = receiver.latest("messaging.client.consumed.messages").values()
            return sum(p.value for p in points if p.attributes.get("celery.task.name") == "post")

        wait_until(
            lambda: len(receiver.named("run/post")) >= TASKS and consumed() == TASKS,
            30,
            message="the run spans and the OTLP metrics",
        )
    except BaseException:
        print(worker.log()[-6000:])
        raise
    finally:
        worker.stop()  # the export process drains and flushes: every span is in after this
        client.close()
    yield Run(receiver, worker, ids, samples, export_pythonpath, main_pythonpath)
    receiver.stop()


def test_one_consumer_span_and_one_producer_span_per_task_ours_and_parented(run: Run) -> None:
    """Given upstream's Celery instrumentation installed too, when 20 posts are published and
    run, then each has exactly one producer span and one consumer span, both ours, the
    run span a child of the publish span; upstream made none."""
    producers, runs = run.named("apply_async/post"), run.named("run/post")
    assert len(producers) == TASKS and {s.scope for s in producers} == {OURS}
    assert len(runs) == TASKS and {s.scope for s in runs} == {OURS}
    assert not [s for s in run.receiver.spans if s.scope == UPSTREAM_CELERY]
    by_message = {s.attributes["messaging.message.id"]: s for s in producers}
    assert set(by_message) == set(run.ids)
    for span in runs:
        parent = by_message[span.attributes["messaging.message.id"]]
        assert (span.trace_id, span.parent_span_id) == (parent.trace_id, parent.span_id)
        assert span.kind == "SPAN_KIND_CONSUMER" and parent.kind == "SPAN_KIND_PRODUCER"
    assert "telemetry: opentelemetry-instrumentation-celery is uninstrumented" in run.worker.log()


def test_every_span_survives_recycling_each_task_parented(run: Run) -> None:
    """Given a pool process that exits after every task, then all 20 run spans arrived, and so
    did the span each task opens itself, its SQLAlchemy query's and its own Redis
    command's: one each per task, each under the span that encloses it."""
    runs = {s.span_id: s for s in run.named("run/post")}
    own = run.named("ledger.post", "ledger")
    queries = [s for s in run.named("SELECT") if s.scope.endswith("sqlalchemy")]
    commands = run.named("INCRBY", REDIS_SCOPE)
    assert len(runs) == len(own) == len(queries) == len(commands) == TASKS
    assert {s.parent_span_id for s in own} == set(runs)
    by_own = {s.span_id: s for s in own}
    for child in (*queries, *commands):
        parent = by_own[child.parent_span_id]
        assert child.trace_id == parent.trace_id == runs[parent.parent_span_id].trace_id
    # Every message, the producer's first included, carried the publish-time header.
    waits = run.samples["celery_task_queue_wait_seconds_count"]
    assert waits[(("queue", "ledger"), ("task", "post"))] == TASKS


def test_kombus_own_commands_make_no_spans_a_tasks_own_command_does(run: Run) -> None:
    """Given upstream's Redis instrumentation active in every process, then the only Redis
    spans are the tasks' own INCRBY: kombu's publishes, reservations, acks, heartbeats
    and binding refreshes, and the result backend's writes, made none."""
    redis_spans = [s for s in run.receiver.spans if s.scope == REDIS_SCOPE]
    assert {s.name for s in redis_spans} == {"INCRBY"}
    assert not [s for s in redis_spans if any(c in s.name for c in KOMBU_COMMANDS)]
    assert len(redis_spans) == TASKS


def test_service_name_is_the_apps_main_name(run: Run) -> None:
    worker_spans = [*run.named("run/post"), *run.named("ledger.post"), *run.named("INCRBY")]
    assert {s.resource.get("service.name") for s in worker_spans} == {"ledger"}


def test_the_export_process_runs_without_the_auto_instrumentation(run: Run) -> None:
    assert AUTO_INSTRUMENTATION in run.main_pythonpath
    assert AUTO_INSTRUMENTATION not in run.export_pythonpath


def test_otlp_metrics_count_every_task_and_no_readiness_probe(run: Run) -> None:
    """Given the distro's default OTEL_METRICS_EXPORTER=otlp, then the OTLP metrics count
    the 20 posts, and the health task the readiness probe runs is in none of them."""
    consumed = run.receiver.latest("messaging.client.consumed.messages")
    durations = run.receiver.latest("messaging.process.duration")
    task = "celery.task.name"
    assert {p.attributes[task]: p.value for p in consumed.values()} == {"post": TASKS}
    assert {p.attributes[task]: p.count for p in durations.values()} == {"post": TASKS}
    assert not any("health_check_task" in str(p.attributes) for p in run.receiver.points)


def test_the_variable_turns_it_all_off(start_worker: object, receiver: OtlpReceiver) -> None:
    """Given OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=jobpilot_telemetry (the configurator
    still selected), then upstream's spans are the only ones, and nothing serves /metrics."""
    env = ledger_env(receiver, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="jobpilot_telemetry")
    worker: WorkerProcess = start_worker(env, command=WORKER)  # type: ignore[operator]
    ids = produce(receiver, 3)
    runs = wait_until(
        lambda: len(found := receiver.named("run/post")) >= 3 and found, 30, message="3 runs"
    )
    assert {s.attributes["messaging.message.id"] for s in runs} == set(ids)
    worker.stop()
    assert {s.scope for s in receiver.named("run/post")} == {UPSTREAM_CELERY}
    assert not [s for s in receiver.spans if s.scope == OURS and s.name != "apply_async/post"]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(worker.metrics_url, timeout=2)


def test_a_grpc_default_without_the_extra_is_one_line_and_no_export(
    start_worker: object, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """Given the distro's gRPC default and no grpc exporter installed, then one line names
    the extra, the worker runs its tasks with span and metric export off, and nothing
    was switched to HTTP."""
    shadow = tmp_path / "opentelemetry" / "exporter" / "otlp" / "proto" / "grpc"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('"""An empty package: the grpc exporter is absent."""\n')
    env = ledger_env(receiver, PYTHONPATH=str(tmp_path))
    del env["OTEL_EXPORTER_OTLP_PROTOCOL"]
    worker: WorkerProcess = start_worker(env, command=WORKER)  # type: ignore[operator]
    produce(receiver, 3)

    def finished() -> bool:
        done = samples_by_labels(worker.metrics_url).get("celery_task_finished_total", {})
        return done.get((("outcome", "succeeded"), ("queue", "ledger"), ("task", "post"))) == 3

    wait_until(finished, 30, message="3 posts finished")
    assert worker.child_pids() == worker.pool_pids()  # no export process
    worker.stop()
    line = (
        "telemetry: OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the grpc exporter, which is not "
        "installed: pip install 'jobpilot-telemetry[grpc]', or set "
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf; span and metric export are off"
    )
    assert worker.log().count(line) == 1
    assert not [s for s in receiver.spans if s.name != "apply_async/post"]
    assert not receiver.points


def test_celery_multi_detached_nodes_keep_the_auto_instrumentation(
    receiver: OtlpReceiver, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """Given ``opentelemetry-instrument celery multi start`` (whose nodes are detached
    ``celery worker --detach`` processes), then the node runs the telemetry: it serves
    /metrics, counts a task and traces it."""
    port = free_port()
    env = {
        **os.environ,
        **ledger_env(receiver),
        "METRICS_PORT": str(port),
        "PYTHONPATH": str(ROOT),
    }
    node = f"z{os.getpid()}"
    files = [f"--pidfile={tmp_path}/%n.pid", f"--logfile={tmp_path}/%n.log"]
    multi = [INSTRUMENT, str(BIN / "celery"), "multi"]
    started = subprocess.run(
        [*multi, "start", node, "-A", APP, "-Q", "ledger", "-c", "1", "--loglevel=INFO", *files],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        url = f"http://127.0.0.1:{port}/metrics"
        ids = produce(receiver, 1)

        def finished() -> bool:
            try:
                done = samples_by_labels(url).get("celery_task_finished_total", {})
            except OSError:
                return False
            return done.get((("outcome", "succeeded"), ("queue", "ledger"), ("task", "post"))) == 1

        wait_until(finished, 45, message="the detached node ran the task")
        run_span = receiver.wait_for("run/post", message_id=ids[0])
        assert run_span.scope == OURS
    finally:
        subprocess.run(
            [*multi, "stopwait", node, *files],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=60,
        )


def test_without_the_configurator_one_line_and_the_main_process_makes_no_broker_spans(
    start_worker: object, receiver: OtlpReceiver
) -> None:
    """Given a worker started without OTEL_PYTHON_CONFIGURATOR, so that the SDK's provider is
    set up before the fork and exports from the main process too, then one line says what
    that costs, and kombu's commands there (reservations, acks, heartbeats) make no spans."""
    env = ledger_env(receiver, OTEL_LOGS_EXPORTER="none")
    del env["OTEL_PYTHON_CONFIGURATOR"]
    worker: WorkerProcess = start_worker(env, command=WORKER)  # type: ignore[operator]
    produce(receiver, 3)
    wait_until(lambda: len(receiver.named("run/post")) >= 3, 30, message="3 runs")
    worker.stop()  # the main process's SDK provider flushes at exit
    line = "telemetry: the OpenTelemetry SDK was set up before the pool forks"
    assert worker.log().count(line) == 1
    redis_spans = {s.name for s in receiver.spans if s.scope == REDIS_SCOPE}
    assert redis_spans == {"INCRBY"}
    assert [s.scope for s in receiver.named("run/post")] == [OURS] * 3
