"""One warning at start when the broker may evict or forget queued messages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.private_redis import PrivateRedis
from tests.support.worker_process import WorkerProcess, free_port
from worker.broker_policy import CLUSTER_REFUSAL, broker_problems, cluster_refusal

WARNING = "broker: "


def test_a_safe_broker_has_no_problems() -> None:
    assert broker_problems({"maxmemory_policy": "noeviction", "aof_enabled": 1}) == []


def test_eviction_and_missing_aof_are_both_named() -> None:
    problems = broker_problems({"maxmemory_policy": "allkeys-lru", "aof_enabled": 0})
    assert len(problems) == 2
    assert "allkeys-lru" in problems[0] and "AOF" in problems[1]


@pytest.fixture
def evicting_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, None, "--maxmemory-policy", "allkeys-lru").start()
    yield server
    server.stop()


@pytest.fixture
def safe_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path).start()  # AOF on, noeviction (Redis's default)
    yield server
    server.stop()


@pytest.mark.integration
def test_the_worker_warns_once_about_an_evicting_broker(
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
    evicting_redis: PrivateRedis,
) -> None:
    worker = start_worker({**worker_env, "REDIS_URL": evicting_redis.url})
    log = worker.wait_for_log(WARNING, 10)
    lines = [line for line in log.splitlines() if WARNING in line]
    assert len(lines) == 1 and "allkeys-lru" in lines[0] and "WARNING" in lines[0]


@pytest.mark.integration
def test_the_worker_is_quiet_about_a_safe_broker(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], safe_redis: PrivateRedis
) -> None:
    worker = start_worker({**worker_env, "REDIS_URL": safe_redis.url})
    # The check runs at worker_ready, before the "ready" line the start waited for
    assert WARNING not in worker.log()


def test_a_cluster_node_is_refused_and_a_plain_server_is_not() -> None:
    assert cluster_refusal({"cluster_enabled": 1}) == CLUSTER_REFUSAL
    assert cluster_refusal({"cluster_enabled": 0}) is None
    assert cluster_refusal({}) is None


@pytest.mark.integration
def test_the_worker_refuses_a_redis_cluster_with_one_line(
    tmp_path: Path, log_dir: Path, worker_env: dict[str, str]
) -> None:
    # Given one redis-server with cluster mode on
    node = PrivateRedis(
        tmp_path,
        None,
        *("--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")),
        # The bus port defaults to the port + 10000, out of range for a high free port.
        *("--cluster-port", str(free_port())),
    ).start()
    worker = WorkerProcess({**worker_env, "REDIS_URL": node.url}, log_dir)
    try:
        # When a worker starts on it
        code = worker.start(wait=False).wait_exit(60)
        # Then it exits non-zero with exactly one line saying why, and no traceback
        log = worker.log()
        assert code != 0
        assert [line for line in log.splitlines() if CLUSTER_REFUSAL in line] == [CLUSTER_REFUSAL]
        assert "Traceback" not in log
    finally:
        worker.stop(timeout=10)
        node.stop()
