"""rediss:// and sentinel:// with BROKER_SENTINEL_TLS end to end: TLS-only servers, a self-signed CA.

The worker, the readiness probe, the depth poller and the dead-letter writer all
connect over TLS with certificate verification; a plaintext client is refused.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from bench.sentinel import MASTER_NAME, Passwords, RedisNode, SentinelGroup, Tls
from tests.support.deadletters import records
from tests.support.endpoints import fetch, ready_body
from tests.support.tracing import run_as_producer
from tests.support.worker_process import WorkerProcess, wait_until
from worker.celery_app import celery_config
from worker.settings import load_settings


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """A self-signed CA, and a server certificate it signs for localhost and 127.0.0.1."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=jobpilot test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=directory)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr", cwd=directory)  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.cnf", "-out", "server.pem", cwd=directory)  # fmt: skip


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisNode]:
    """A redis-server on TLS only, with a certificate for localhost and 127.0.0.1."""
    make_certificates(tmp_path)
    tls = Tls(tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem")
    server = RedisNode(tmp_path / "redis", tls).start()
    yield server
    server.stop()


PASSWORDS = Passwords(master="master-password-5e1a", sentinels="sentinel-password-0b7c")


@pytest.fixture
def tls_sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A master, a replica and three sentinels, all on TLS only, with passwords."""
    certificates, workdir = tmp_path / "certificates", tmp_path / "redis"
    certificates.mkdir()
    workdir.mkdir()
    make_certificates(certificates)
    tls = Tls(certificates / "server.pem", certificates / "server.key", certificates / "ca.pem")
    group = SentinelGroup(workdir, tls=tls, passwords=PASSWORDS).start()
    yield group
    group.stop()


def test_rediss_urls_require_a_verified_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("a CA bundle\n")
    monkeypatch.setenv("REDIS_URL", "rediss://localhost:6380/0")
    monkeypatch.setenv("REDIS_TLS_CA_FILE", str(ca_file))
    config = celery_config(load_settings())
    verified = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca_file)}
    assert config["broker_use_ssl"] == config["redis_backend_use_ssl"] == verified
    monkeypatch.delenv("REDIS_TLS_CA_FILE")
    config = celery_config(load_settings())
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}  # system store


def test_a_plaintext_backend_beside_a_rediss_broker_gets_no_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "rediss://localhost:6380/0")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://localhost:6379/1")
    config = celery_config(load_settings())
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert "redis_backend_use_ssl" not in config


def run_through(env: dict[str, str]) -> str:
    """Publish a task and wait for its result from a separate process on the TLS broker."""
    return run_as_producer(
        env,
        "from worker.celery_app import app\n"
        "r = app.send_task('tests.own_headers', ignore_result=False)\n"
        "print(r.get(timeout=30) is not None)\n",
    )


def dead_letter_reason(client: redis.Redis) -> str:
    """Push a non-JSON item into `default`; the reason the worker dead-letters it with."""
    client.lpush("default", b"not json over tls")
    found = wait_until(lambda: records(client), 15)
    return str(found[0]["reason"])


@pytest.mark.integration
@pytest.mark.faults
def test_every_connection_uses_tls_and_plaintext_is_refused(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], tls_redis: RedisNode
) -> None:
    assert tls_redis.tls is not None
    env = {
        **worker_env,
        "REDIS_URL": f"rediss://localhost:{tls_redis.port}/0",
        "REDIS_TLS_CA_FILE": str(tls_redis.tls.ca_file),
        "READINESS_INTERVAL": "1",
        "QUEUE_POLL_INTERVAL": "1",
    }
    worker = start_worker(env)
    # The worker consumes and stores results over TLS
    assert run_through(env) == "True"
    # The readiness probe reaches the broker over TLS (ready once every check's first probe is in)
    body = ready_body(worker)
    assert body["checks"]["broker"]["up"] is True
    # The depth poller reads over TLS
    with urllib.request.urlopen(worker.metrics_url, timeout=5) as response:
        metrics = response.read().decode()
    poll_line = next(
        line for line in metrics.splitlines() if line.startswith("celery_queue_poll_last_success")
    )
    assert float(poll_line.split()[-1]) > 0
    # The dead-letter writer writes over TLS
    assert dead_letter_reason(tls_redis.client(socket_timeout=5)) == "not_json"
    # And a plaintext client gets nothing
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=tls_redis.port, socket_timeout=2).ping()


@pytest.mark.integration
def test_a_sentinel_list_over_tls_with_passwords_reaches_the_master_and_shows_no_password(
    tls_sentinels: SentinelGroup,
    start_worker: Callable[..., WorkerProcess],
    worker_env: dict[str, str],
) -> None:
    # Given sentinels and a master that speak TLS only and require passwords, the master's in
    # the URLs and the sentinels' in BROKER_SENTINEL_PASSWORD
    assert tls_sentinels.tls is not None
    env = {
        **worker_env,
        "LOG_LEVEL": "DEBUG",
        "REDIS_URL": tls_sentinels.urls,
        "BROKER_SENTINEL_MASTER": MASTER_NAME,
        "BROKER_SENTINEL_PASSWORD": PASSWORDS.sentinels,
        "BROKER_SENTINEL_TLS": "true",
        "REDIS_TLS_CA_FILE": str(tls_sentinels.tls.ca_file),
        "READINESS_INTERVAL": "1",
        "QUEUE_POLL_INTERVAL": "1",
    }
    worker = start_worker(env)
    # Then tasks run and their results come back through Celery's Sentinel backend
    assert run_through(env) == "True"
    # And the readiness probe reached the master the sentinels name, over TLS
    body = ready_body(worker)
    assert body["checks"]["broker"]["reached"] == f"127.0.0.1:{tls_sentinels.master.port}"
    # And the dead-letter writer writes to the master over TLS
    assert dead_letter_reason(tls_sentinels.master.client(socket_timeout=5)) == "not_json"
    # And neither a sentinel nor the master answers a plaintext client
    for port in (tls_sentinels.sentinel_ports[0], tls_sentinels.master.port):
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()
    # And neither password appears in the log, /metrics or /readyz
    surfaces = [worker.log(), fetch(worker, "/metrics")[1].decode(), json.dumps(body)]
    for password in (PASSWORDS.master, PASSWORDS.sentinels):
        assert not [surface for surface in surfaces if password in surface]
