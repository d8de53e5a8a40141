"""Nothing lost in transit: silent network faults, survived by workers in network namespaces.

Each worker runs in a network namespace of its own and reaches a private,
AOF-persisted Redis over a veth pair (``tests.support.netns``). The faults
(``tests.support.faults``): silent forgetting (existing connections dropped both
ways, ``CLIENT KILL``, ``ss -K``; new connections pass), a blackhole, random
loss, and a delaying relay (``tests.support.tcp_proxy``). Short settings (2 s
timeouts and checks) keep each case short; docs/transit.md derives the bound
with the defaults, and the idle case also runs once with them.

Tasks note each run in a file of this test's (``tests.note_run``), so a run is
seen even while Redis is out of reach. Every case asserts that each published
task ran at least once, and that each worker received what was published to
it plus what was redelivered.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.broker_exporter import ExporterProcess
from tests.support.endpoints import fetch, readyz
from tests.support.faults import CHAIN, Faults
from tests.support.netns import Host, Hosts
from tests.support.private_redis import PrivateRedis
from tests.support.scrape import samples_by_labels, scrape
from tests.support.tcp_proxy import TcpProxy
from tests.support.worker_process import ROOT, WorkerProcess, wait_until
from worker.celery_app import app
from worker.command import worker_command

pytestmark = [pytest.mark.integration, pytest.mark.faults]

#: The short settings: 2 s timeouts and checks; keepalive gives up after 2 + 1 x 2 s.
SHORT = {
    "BROKER_SOCKET_TIMEOUT": "2",
    "BROKER_CONNECT_TIMEOUT": "2",
    "BROKER_HEALTH_CHECK_INTERVAL": "2",
    "BROKER_KEEPALIVE_IDLE": "2",
    "BROKER_KEEPALIVE_INTERVAL": "1",
    "BROKER_KEEPALIVE_COUNT": "2",
    "LIVENESS_TIMEOUT": "7",
}
#: Time limits and a visibility timeout of these tests' own: a task may run 8 s, and a
#: message unacked for 14 s is restored (14 > 1.1 x (10 + 2), as the settings require).
LIMITS = {
    "BROKER_VISIBILITY_TIMEOUT": "14",
    "TASK_SOFT_TIME_LIMIT": "9",
    "TASK_TIME_LIMIT": "10",
    "MAX_RETRY_COUNTDOWN": "2",
    "BROKER_UNACKED_RESTORE_INTERVAL": "1",
    "BROKER_UNACKED_RESTORE_THROTTLE": "1",
}
#: A silent consuming connection is noticed after the wait (0.25 s) plus the health-check
#: interval, within the silence check's second; the consumer then closes and reconnects.
NOTICED = 0.25 + 2 + 1
RESUME_SHORT = NOTICED + 4
RESUME_DEFAULT = 30
METRICS_PORT = 9464
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


@dataclass
class Net:
    hosts: list[Host]
    server: PrivateRedis
    faults: list[Faults]
    workdir: Path

    @property
    def client(self) -> redis.Redis:
        return redis.Redis(port=self.server.port, socket_timeout=5)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Net]:
    workdir = tmp_path_factory.mktemp("transit")
    # Host numbers of this run's own, away from the fleet test's 1 to 3.
    with Hosts(3, first=20 + os.getpid() % 200) as hosts:
        gateways = [h.gateway for h in hosts]
        server = PrivateRedis(
            workdir, None, "--bind", "127.0.0.1", *gateways, "--protected-mode", "no"
        ).start()
        try:
            yield Net(hosts, server, [Faults(h, server) for h in hosts], workdir)
        finally:
            server.stop()
            if request.session.testsfailed:
                for log in workdir.glob("*.log"):
                    print(f"--- {log.name}:\n{log.read_text(errors='replace')[-6000:]}")


@dataclass
class Subject:
    """A worker in a namespace, consuming its own queue; what was published to it.
    (Without a worker: tasks for workers started otherwise.)"""

    worker: WorkerProcess | None
    host: Host
    queue: str
    notes: Path
    #: Where the test publishes: the private Redis, from this side of the link.
    server_url: str
    published: int = 0

    def publish(self, count: int, seconds: float = 0.0, task: str = "tests.note_run") -> list[str]:
        """``count`` tasks with fresh keys, from a plain producer on this side of the link."""
        keys = [f"{self.queue}-{uuid.uuid4().hex[:8]}" for _ in range(count)]
        with app.connection_for_write(self.server_url) as connection:
            for key in keys:
                app.send_task(
                    task,
                    args=[str(self.notes), key, seconds],
                    queue=self.queue,
                    connection=connection,
                )
        self.published += count
        return keys

    def runs(self) -> Counter[str]:
        if not self.notes.exists():
            return Counter()
        return Counter(line.split()[0] for line in self.notes.read_text().splitlines() if line)

    def ran(self, keys: list[str]) -> bool:
        runs = self.runs()
        return all(runs[key] for key in keys)

    def samples(self) -> Samples:
        assert self.worker is not None
        return samples_by_labels(self.worker.metrics_url)

    def settled(self, timeout: float = 60) -> Samples:
        """The worker's counts once it holds nothing and has finished what it received;
        received = published (here and by the worker) + redelivered must then hold."""

        seen: list[tuple[float, float, float]] = []

        def idle() -> Samples | None:
            try:
                samples = self.samples()
            except OSError:
                return None
            held = total(samples, "celery_tasks_active") + total(samples, "celery_tasks_reserved")
            received = total(samples, "celery_task_received_total")
            finished = total(samples, "celery_task_finished_total")
            seen[:] = [(held, received, finished)]
            return samples if held == 0 and received == finished else None

        try:
            samples: Samples = wait_until(idle, timeout, interval=0.3, message="an idle worker")
        except AssertionError as exc:
            assert self.worker is not None
            alive = self.worker.process is not None and self.worker.process.poll() is None
            raise AssertionError(
                f"{exc}; held, received, finished: {seen}; worker alive: {alive}\n"
                + self.worker.log()[-3000:]
            ) from None
        received = total(samples, "celery_task_received_total")
        own = total(samples, "celery_task_published_total")
        redelivered = total(samples, "celery_task_redelivered_total")
        assert received == self.published + own + redelivered, (received, self.published, own)
        return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value for key, value in samples.get(name, {}).items() if labels.items() <= dict(key).items()
    )


def start_subject(net: Net, index: int, env: dict[str, str], name: str) -> Subject:
    host = net.hosts[index]
    queue = f"transit-{name}"
    full = {
        **os.environ,
        **LIMITS,
        **env,
        "REDIS_URL": env.get("REDIS_URL", f"redis://{host.gateway}:{net.server.port}/0"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{net.workdir}/{name}.db",
        "METRICS_HOST": host.address,
        "METRICS_PORT": str(METRICS_PORT),
        "READINESS_INTERVAL": "1",
        "METRICS_RENDER_INTERVAL": "0",
        "OTEL_TRACES_EXPORTER": "none",
        "LOG_LEVEL": "INFO",
    }
    command = host.command(*worker_command([queue], 2), "--include", "tests.support.tasks")
    worker = WorkerProcess(full, net.workdir, command=command)
    worker.metrics_url = f"http://{host.address}:{METRICS_PORT}/metrics"
    worker.start()
    wait_until(lambda: readyz(worker)[0] == 200, 30, interval=0.2, message=f"{name} ready")
    return Subject(worker, host, queue, net.workdir / f"{name}.notes", net.server.url)


@pytest.fixture(scope="module")
def short(net: Net) -> Iterator[Subject]:
    """The worker most cases share: short settings, namespace 0."""
    subject = start_subject(net, 0, SHORT, "short")
    yield subject
    subject.worker.stop(timeout=10)


@pytest.fixture
def clean(net: Net) -> Iterator[None]:
    """Every rule a case adds goes, however the case ends."""
    yield
    for faults in net.faults:
        faults.clear()


def resumed_after(subject: Subject, keys: list[str], since: float, timeout: float) -> float:
    wait_until(
        lambda: any(subject.runs()[k] for k in keys), timeout, interval=0.05, message="resume"
    )
    return time.monotonic() - since


@pytest.mark.parametrize("keep_dropped", [True, False], ids=["ports_stay_dropped", "drop_lifted"])
def test_half_open_while_idle_loses_nothing_and_resumes(
    net: Net, short: Subject, clean: None, keep_dropped: bool
) -> None:
    # Given an idle worker whose every connection the network then forgets
    short.settled()
    main_pid = short.worker.pid
    healed = net.faults[0].forget(keep_dropped=keep_dropped)
    # When 20 tasks are published
    keys = short.publish(20)
    # Then it consumes again within the bound, takes all 20, and lost none
    resumed = resumed_after(short, keys, healed, RESUME_SHORT + 5)
    wait_until(lambda: short.ran(keys), 20, interval=0.1, message="all 20")
    short.settled()
    assert short.worker.pid == main_pid and resumed <= RESUME_SHORT, resumed
    print(f"half-open idle ({'dropped' if keep_dropped else 'lifted'}): resumed {resumed:.1f} s")


def test_half_open_while_idle_with_the_default_settings_resumes_within_30_s(
    net: Net, clean: None
) -> None:
    subject = start_subject(net, 1, {}, "defaults")
    try:
        subject.settled()
        healed = net.faults[1].forget()
        keys = subject.publish(20)
        resumed = resumed_after(subject, keys, healed, RESUME_DEFAULT + 10)
        wait_until(lambda: subject.ran(keys), 30, interval=0.1, message="all 20")
        subject.settled()
        assert resumed <= RESUME_DEFAULT, resumed
        print(f"half-open idle, default settings: resumed {resumed:.1f} s")
    finally:
        subject.worker.stop(timeout=10)


def test_half_open_while_busy_cancels_and_redelivers_the_running_tasks(
    net: Net, short: Subject, clean: None
) -> None:
    before = short.settled()
    # Given two 8 s tasks running, one per pool process
    keys = short.publish(2, seconds=8)
    wait_until(
        lambda: total(short.samples(), "celery_tasks_active") == 2, 10, message="two running"
    )
    # When the network forgets the worker's connections
    net.faults[0].forget()
    # Then both are cancelled (requeued), redelivered, and run to the end, none lost
    wait_until(lambda: short.ran(keys), 40, interval=0.2, message="both ran")
    after = short.settled()
    requeued = total(after, "celery_task_finished_total", outcome="requeued") - total(
        before, "celery_task_finished_total", outcome="requeued"
    )
    redelivered = total(after, "celery_task_redelivered_total") - total(
        before, "celery_task_redelivered_total"
    )
    assert requeued == 2 and redelivered >= 2, (requeued, redelivered)


def consuming_port(net: Net, index: int) -> int:
    """The namespace-side port of the connection the worker consumes on (blocked in BLMOVE)."""

    def blocked() -> int | None:
        for client in net.client.client_list():
            address, _, port = str(client["addr"]).rpartition(":")
            if address == net.hosts[index].address and client["cmd"] == "blmove":
                return int(port)
        return None

    port: int = wait_until(blocked, 5, interval=0.02, message="the consuming connection")
    return port


def test_a_reply_lost_mid_pop_runs_once_after_recovery(
    net: Net, short: Subject, clean: None
) -> None:
    before = short.settled()
    # Given the reply that carries one message lost on its way to the worker
    port = consuming_port(net, 0)
    key = f"{short.queue}-{uuid.uuid4().hex[:8]}"
    net.faults[0].iptables(
        ["-A", CHAIN, "-p", "tcp", "--dport", str(port),
         "-m", "string", "--string", key, "--algo", "bm", "-j", "DROP"]
    )  # fmt: skip
    with app.connection_for_write(net.server.url) as connection:
        app.send_task(
            "tests.note_run", args=[str(short.notes), key, 0], queue=short.queue,
            connection=connection,
        )  # fmt: skip
    short.published += 1
    # Then the message is in no queue: it moved to an in-flight list
    client = net.client
    wait_until(lambda: client.llen(short.queue) == 0, 5, message="the message taken")
    lists = [k for k in client.keys("jobpilot:inflight:*") if client.type(k) == b"list"]
    assert [client.llen(k) for k in lists] == [1]
    # When Redis forgets the connection
    healed = net.faults[0].forget([port])
    # Then the message runs, once, after the worker reconnected
    resumed = resumed_after(short, [key], healed, RESUME_SHORT + 5)
    after = short.settled()
    assert short.runs()[key] == 1
    # It was never delivered before: a first delivery, not a redelivery
    assert total(after, "celery_task_redelivered_total") == total(
        before, "celery_task_redelivered_total"
    )
    print(f"reply lost mid-pop: ran once, {resumed:.1f} s after Redis forgot the connection")


def test_blackhole_for_20_s_during_work(net: Net, short: Subject, clean: None) -> None:
    short.settled()
    # Given a stream of work
    keys = short.publish(30, seconds=0.3)
    wait_until(lambda: total(short.samples(), "celery_tasks_active") > 0, 10, message="busy")
    wait_until(lambda: readyz(short.worker)[0] == 200, 10, interval=0.1, message="ready")
    # When nothing passes to Redis for 20 s
    net.faults[0].blackhole()
    started = time.monotonic()
    unready_at: float | None = None
    dead: list[float] = []
    more: list[str] = []
    while time.monotonic() - started < 20:
        if not more and time.monotonic() - started > 5:
            more = short.publish(10)  # work keeps arriving
        status, _ = readyz(short.worker)
        if status == 503 and unready_at is None:
            unready_at = time.monotonic() - started
        if fetch(short.worker, "/livez")[0] != 200:
            dead.append(time.monotonic() - started)
        time.sleep(0.2)
    net.faults[0].clear()
    # Then /readyz said so within the wait + the health-check interval + a probe interval,
    # /livez stayed 200, and once it is back, the worker is ready and ran everything
    assert unready_at is not None and unready_at <= NOTICED + 1 + 1, unready_at
    assert dead == [], dead
    wait_until(lambda: readyz(short.worker)[0] == 200, 20, interval=0.2, message="ready again")
    wait_until(lambda: short.ran(keys + more), 30, interval=0.2, message="everything ran")
    short.settled()
    print(f"blackhole 20 s: /readyz 503 after {unready_at:.1f} s, /livez 200 throughout")


def test_a_blocking_hook_inside_the_event_loop_makes_livez_503(
    net: Net, short: Subject, clean: None
) -> None:
    short.settled()
    with app.connection_for_write(net.server.url) as connection:
        app.send_task("tests.block_event_loop", args=[9], queue=short.queue, connection=connection)
    short.published += 1
    blocked = time.monotonic()
    wait_until(lambda: fetch(short.worker, "/livez")[0] == 503, 9, interval=0.2, message="503")
    assert time.monotonic() - blocked <= 7 + 1.5
    wait_until(lambda: fetch(short.worker, "/livez")[0] == 200, 15, interval=0.2, message="200")
    short.settled()


def test_the_result_backend_half_open_fails_the_delivery_within_the_bound(
    net: Net, short: Subject, clean: None
) -> None:
    """Given both pool processes with a result-backend connection the network then forgets
    (and only those), then a task that stores its result runs its body, fails within the
    bound instead of hanging its pool process, and is counted failed; the next succeeds."""
    before = short.settled()
    warm = short.publish(6, seconds=0.3, task="tests.note_with_result")
    wait_until(lambda: short.ran(warm), 20, interval=0.1, message="warm-up")
    pids = set(note_pids(short, warm))
    assert len(pids) == 2  # both pool processes hold a result-backend connection
    short.settled()
    time.sleep(2.5)  # idle past the health-check interval: redis-py PINGs before the next use
    net.faults[0].forget(net.faults[0].ports_of(pids))
    (key,) = short.publish(1, task="tests.note_with_result")
    wait_until(lambda: short.ran([key]), 10, interval=0.05, message="its body ran")
    body_ran = time.monotonic()

    def failed() -> bool:
        return total(short.samples(), "celery_task_finished_total", outcome="failed") > total(
            before, "celery_task_finished_total", outcome="failed"
        )

    wait_until(failed, 10, interval=0.05, message="counted failed")
    assert time.monotonic() - body_ran <= 2 + 2 + 1
    (then,) = short.publish(1, task="tests.note_with_result")
    wait_until(lambda: short.ran([then]), 10, interval=0.05, message="the next task")
    after = short.settled()
    assert total(after, "celery_task_finished_total", outcome="succeeded") > total(
        before, "celery_task_finished_total", outcome="succeeded"
    )
    assert short.runs()[key] == 1  # failed, acknowledged: not run again


def note_pids(subject: Subject, keys: list[str]) -> list[int]:
    """The pool processes that ran ``keys``."""
    lines = (line.split() for line in subject.notes.read_text().splitlines() if line)
    return [int(pid) for key, pid in lines if key in keys]


PRODUCER = """
import sys, time
import telemetry
from worker.celery_app import app
telemetry.install(app)
notes, queue = sys.argv[1], sys.argv[2]
app.send_task("tests.note_run", args=[notes, "first", 0], queue=queue)
print("published", flush=True)
sys.stdin.readline()
started = time.monotonic()
try:
    app.send_task("tests.note_run", args=[notes, "second", 0], queue=queue)
    outcome = "returned"
except Exception as exc:
    outcome = type(exc).__name__
print(outcome, round(time.monotonic() - started, 2), flush=True)
"""


def test_a_producer_on_a_silently_forgotten_pooled_connection_returns_within_the_bound(
    net: Net, clean: None
) -> None:
    host = net.hosts[1]
    queue = f"transit-producer-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        **SHORT,
        "REDIS_URL": f"redis://{host.gateway}:{net.server.port}/0",
        "OTEL_SDK_DISABLED": "true",
    }
    producer = subprocess.Popen(
        host.command(sys.executable, "-c", PRODUCER, str(net.workdir / "producer.notes"), queue),
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert producer.stdout is not None and producer.stdin is not None
        assert producer.stdout.readline().strip() == "published"
        time.sleep(2.5)  # the pooled connection idles past the health-check interval
        net.faults[1].forget()
        producer.stdin.write("go\n")
        producer.stdin.flush()
        outcome, seconds = producer.stdout.readline().split()
        assert outcome == "returned" and float(seconds) <= 2 + 2 + 1, (outcome, seconds)
        assert net.client.llen(queue) == 2  # once each: no publish was repeated
        print(f"producer on a forgotten connection: {outcome} after {seconds} s")
    finally:
        producer.kill()
        producer.wait(10)


def test_the_broker_exporter_recovers_within_the_bound(net: Net, clean: None) -> None:
    host = net.hosts[1]
    env = {
        **SHORT,
        "REDIS_URL": f"redis://{host.gateway}:{net.server.port}/0",
        "METRICS_HOST": host.address,
        "QUEUE_POLL_INTERVAL": "1",
    }
    exporter = ExporterProcess(env, net.workdir, wrap=host.command).start()
    try:

        def last_success() -> float:
            text = scrape(exporter.url + "/metrics")
            line = next(
                line for line in text.splitlines()
                if line.startswith("celery_queue_poll_last_success_timestamp_seconds ")
            )  # fmt: skip
            return float(line.split()[1])

        wait_until(lambda: last_success() > 0, 10, message="a first poll")
        healed = net.faults[1].forget()
        wall = time.time()
        wait_until(lambda: last_success() > wall, 1 + 1 + 1 + 5, interval=0.2, message="a poll")
        print(f"broker exporter: polling again {time.monotonic() - healed:.1f} s after the heal")
    finally:
        exporter.stop()


def test_ten_sigkills_of_the_main_process_during_1000_pops_lose_none(net: Net) -> None:
    """Three workers drain 1,000 tasks; ten times, the main process of one that is taking
    messages is SIGKILLed (a fresh one starts in its place). Whatever its fetch had moved
    comes back from its in-flight list once its deadline passes, whatever it recorded
    after the visibility timeout: every task runs."""
    queue = f"transit-kill-{uuid.uuid4().hex[:6]}"
    notes = net.workdir / f"{queue}.notes"
    env = {
        **os.environ,
        **LIMITS,
        **SHORT,
        "REDIS_URL": net.server.url,
        "OTEL_SDK_DISABLED": "true",
    }
    env |= {"TELEMETRY_ENABLED": "false", "DATABASE_URL": f"sqlite+aiosqlite:///{net.workdir}/k.db"}
    subject = Subject(None, net.hosts[0], queue, notes, net.server.url)
    keys = subject.publish(1000, seconds=0.05)

    def start() -> WorkerProcess:
        worker = WorkerProcess(env, net.workdir, queues=queue)
        worker.start(wait=False)
        return worker

    workers = [start() for _ in range(3)]
    killed = 0
    try:
        while killed < 10:
            # the oldest worker that has taken messages since it started
            taking = [w for w in workers if "received" in w.log() and w.process.poll() is None]
            if not taking:
                time.sleep(0.1)
                continue
            victim = taking[0]
            time.sleep(0.2)
            os.kill(victim.pid, signal.SIGKILL)
            killed += 1
            workers.remove(victim)
            victim.kill()  # its pool processes, which would exit on their own
            workers.append(start())
        wait_until(lambda: subject.ran(keys), 90, interval=0.5, message="all 1,000")
    finally:
        for worker in workers:
            worker.stop(timeout=10)
    runs = subject.runs()
    duplicates = sum(runs[key] - 1 for key in keys)
    print(f"10 SIGKILLs during 1,000 tasks: none lost, {duplicates} ran twice")


def test_lossy_and_slow_for_30_s_loses_nothing_and_counts_every_duplicate(
    net: Net, clean: None
) -> None:
    """20% of the packets lost each way and 200 ms added each way, for 30 s of work."""
    host = net.hosts[2]
    relay = TcpProxy(net.server.port, listen_host=host.gateway).start()
    try:
        subject = start_subject(
            net, 2, {**SHORT, "REDIS_URL": f"redis://{host.gateway}:{relay.port}/0"}, "lossy"
        )
        main_pid = subject.worker.pid
        try:
            subject.settled()
            net.faults[2].lose(0.2, relay.port)
            relay.delay = 0.2
            started, keys = time.monotonic(), []
            while time.monotonic() - started < 30:
                keys += subject.publish(4)
                time.sleep(3)
            net.faults[2].clear()
            relay.delay = 0.0
            wait_until(lambda: subject.ran(keys), 60, interval=0.5, message="every task")
            samples = subject.settled(timeout=90)
            assert subject.worker.pid == main_pid and subject.worker.process.poll() is None
            runs = subject.runs()
            duplicates = sum(runs[key] - 1 for key in keys)
            assert duplicates <= total(samples, "celery_task_redelivered_total")
            print(f"lossy and slow 30 s: {len(keys)} tasks, none lost, {duplicates} ran twice")
        finally:
            subject.worker.stop(timeout=10)
    finally:
        relay.stop()


def test_the_sentinel_clients_recover_within_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given kombu's and the telemetry's clients of a Sentinel group, whose connections to
    the sentinels a NAT then forgets, then each one's next master lookup returns or fails
    within the socket timeout per sentinel, and the one after finds the master."""
    from celery import Celery

    import telemetry
    from bench.sentinel import MASTER_NAME, SentinelGroup
    from telemetry.broker import broker_redis

    for name, value in SHORT.items():
        monkeypatch.setenv(name, value)
    group = SentinelGroup(tmp_path).start()
    relays = [TcpProxy(port).start() for port in group.sentinel_ports]
    urls = ";".join(f"sentinel://127.0.0.1:{relay.port}/0" for relay in relays)
    app = Celery("transit-sentinel", broker=urls, set_as_current=False)
    app.conf.broker_transport_options = {"master_name": MASTER_NAME}
    telemetry.install(app)
    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            ours = broker_redis(app)
            with channel.conn_or_acquire() as kombu_client:
                assert kombu_client.ping() and ours.ping()
                for relay in relays:
                    relay.forget()
                bound = len(relays) * 2 + 1  # each sentinel's socket timeout, and slack
                for client in (kombu_client, ours):
                    client.connection_pool.disconnect()  # the next command asks the sentinels
                    started = time.monotonic()
                    with contextlib.suppress(redis.RedisError):
                        client.ping()
                    assert time.monotonic() - started <= bound
                    client.connection_pool.disconnect()
                    started = time.monotonic()
                    assert client.ping() and time.monotonic() - started <= 2
    finally:
        telemetry.uninstall(app)
        for relay in relays:
            relay.stop()
        group.stop()
