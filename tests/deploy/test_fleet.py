"""A fleet on one machine: three prefork workers, each in a network namespace of its
own, share one Redis; a real Prometheus scrapes them and the broker exporter. One
worker is cut off while it holds tasks; the others run them after the visibility
timeout, and once the link is back every count adds up."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.broker_exporter import ExporterProcess
from tests.support.netns import Host, Hosts
from tests.support.private_redis import PrivateRedis
from tests.support.prometheus import start_prometheus
from tests.support.scrape import samples_by_labels
from tests.support.tracing import run_as_producer
from tests.support.worker_process import ALL_QUEUES, SHORT_VISIBILITY, WorkerProcess, wait_until
from tests.telemetry.metrics.test_exactness import STARTED_OUTCOMES, per_task
from worker.command import worker_command

pytestmark = pytest.mark.integration

WORKERS = 3
METRICS_PORT = 9464
NAP_SECONDS = 4.0
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def publish(broker_url: str, calls: list[tuple[str, list[object]]]) -> int:
    """Publish from a producer that installed the telemetry; its celery_task_published_total."""
    code = (
        "import json, sys, telemetry\n"
        "from prometheus_client import REGISTRY\n"
        "from worker.celery_app import app\n"
        "telemetry.install(app)\n"
        f"for name, args in json.loads({json.dumps(calls)!r}):\n"
        "    app.send_task(name, args=args)\n"
        "print(sum(s.value for m in REGISTRY.collect() for s in m.samples\n"
        "          if s.name == 'celery_task_published_total'))\n"
    )
    return int(float(run_as_producer({"REDIS_URL": broker_url}, code)))


def total(samples: Samples, name: str) -> float:
    return sum(samples.get(name, {}).values())


def held(samples: Samples) -> float:
    return total(samples, "celery_tasks_active") + total(samples, "celery_tasks_reserved")


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    with Hosts(WORKERS) as created:
        yield created


def test_a_cut_worker_s_tasks_run_elsewhere_and_every_count_adds_up(
    hosts: list[Host],
    tmp_path: Path,
    worker_env: dict[str, str],
    start_worker: Callable[..., WorkerProcess],
    start_exporter: Callable[..., ExporterProcess],
) -> None:
    # Given one Redis, reachable from each namespace through its own link
    broker = PrivateRedis(
        tmp_path, None, "--bind", "127.0.0.1", *(h.gateway for h in hosts), "--protected-mode", "no"
    ).start()
    client = redis.Redis(port=broker.port)
    local_url = broker.url
    # And three workers, one per namespace, serving /metrics on their own address
    workers: list[WorkerProcess] = []
    for host in hosts:
        env = {
            **worker_env,
            **SHORT_VISIBILITY,
            "REDIS_URL": f"redis://{host.gateway}:{broker.port}/0",
            "METRICS_HOST": host.address,
            "METRICS_PORT": str(METRICS_PORT),
            "QUEUE_POLL_ENABLED": "false",
            "READINESS_INTERVAL": "1",
            "METRICS_RENDER_INTERVAL": "0",
            "OTEL_TRACES_EXPORTER": "none",
        }
        command = host.command(
            *worker_command(ALL_QUEUES.split(","), 2), "--include", "tests.support.tasks"
        )
        worker = start_worker(env, command=command)
        worker.metrics_url = f"http://{host.address}:{METRICS_PORT}/metrics"
        workers.append(worker)
    exporter = start_exporter({**SHORT_VISIBILITY, "REDIS_URL": local_url})
    targets = [f"{h.address}:{METRICS_PORT}" for h in hosts]
    prometheus = start_prometheus(
        tmp_path, {"celery-worker": targets, "celery-broker-exporter": [exporter.target]}
    )
    try:
        wait_until(
            lambda: len(prometheus.query('up{job="celery-worker"} == 1')) == WORKERS,
            30,
            interval=0.5,
            message="three workers up in Prometheus",
        )
        wait_until(
            lambda: prometheus.query('up{job="celery-broker-exporter"} == 1'),
            30,
            interval=0.5,
            message="the broker exporter up in Prometheus",
        )
        run = f"fleet-{uuid.uuid4().hex[:8]}"
        # When a mixed workload runs: counted tasks, retries, children and failures
        mixed: list[tuple[str, list[object]]] = [
            *(("tests.count_run", [f"{run}:count:{n}"]) for n in range(30)),
            *(("tests.retry_n", [2]) for _ in range(4)),
            *(("tests.enqueue_child", []) for _ in range(4)),
            *(("tests.fail", [n]) for n in range(3)),
        ]
        published = publish(local_url, mixed)
        wait_until(
            lambda: all(client.get(f"{run}:count:{n}") for n in range(30)),
            60,
            message="the mixed workload",
        )
        # And then each worker takes two long tasks, one per pool process
        cut, kept = workers[-1], workers[:-1]
        naps = [f"{run}:nap:{n}" for n in range(2 * WORKERS)]
        published += publish(local_url, [("tests.nap_then_count", [k, NAP_SECONDS]) for k in naps])
        at_cut = wait_until(
            lambda: (
                (s := samples_by_labels(cut.metrics_url))
                and total(s, "celery_tasks_active") == 2
                and s
            ),
            10,
            interval=0.02,
            message="the worker to be cut holding two tasks",
        )
        # And its link is taken down while it holds them
        hosts[-1].cut()
        cut_at = time.monotonic()
        held_at_cut = held(at_cut)
        assert held_at_cut == 2
        # And more work arrives while it is gone
        later = [("tests.count_run", [f"{run}:later:{n}"]) for n in range(20)]
        published += publish(local_url, later)
        # Then after the visibility timeout the other workers run everything, its tasks too
        keys = [*naps, *(f"{run}:later:{n}" for n in range(20))]
        wait_until(lambda: all(client.get(k) for k in keys), 60, interval=0.2, message="all run")
        recovered_after = time.monotonic() - cut_at
        assert recovered_after >= float(SHORT_VISIBILITY["BROKER_VISIBILITY_TIMEOUT"]) - NAP_SECONDS
        # And Prometheus sees the cut worker down
        cut_target = targets[-1]
        wait_until(
            lambda: prometheus.query(f'up{{instance="{cut_target}"}} == 0'),
            20,
            interval=0.5,
            message="up == 0 for the cut worker",
        )
        # When the link is back and all three workers are idle
        hosts[-1].mend()

        def idle() -> list[Samples] | None:
            try:
                every = [samples_by_labels(w.metrics_url) for w in workers]
            except OSError:
                return None
            finished = sum(total(s, "celery_task_finished_total") for s in every)
            received = sum(total(s, "celery_task_received_total") for s in every)
            quiet = all(held(s) == 0 for s in every)
            return every if quiet and finished == received else None

        every = wait_until(idle, 120, interval=0.5, message="three idle workers")
        # Then each worker's counts satisfy the two identities of docs/metrics.md
        for samples in every:
            received = per_task(samples, "celery_task_received_total")
            started = per_task(samples, "celery_task_started_total")
            for key, outcomes in per_task(samples, "celery_task_finished_total").items():
                assert received[key][""] == sum(outcomes.values()), key
                assert started[key][""] == sum(outcomes[o] for o in STARTED_OUTCOMES), key
        # And every delivery is a publish or a redelivery, fleet-wide
        received_total = sum(total(s, "celery_task_received_total") for s in every)
        worker_published = sum(total(s, "celery_task_published_total") for s in every)
        redelivered = sum(total(s, "celery_task_redelivered_total") for s in every)
        assert received_total == published + worker_published + redelivered
        # And at least what the cut worker held came back as redeliveries, to the others
        kept_samples = [every[workers.index(w)] for w in kept]
        assert sum(total(s, "celery_task_redelivered_total") for s in kept_samples) >= held_at_cut
        print(
            f"fleet: sent {published + worker_published:.0f} "
            f"(producer {published}, workers {worker_published:.0f}), "
            f"received {received_total:.0f}, redelivered {redelivered:.0f}, "
            f"held at the cut {held_at_cut:.0f}, every task run {recovered_after:.1f} s after the cut"
        )
    finally:
        prometheus.stop()
        exporter.stop()
        for worker in workers:
            worker.stop(timeout=10)
        broker.stop()
