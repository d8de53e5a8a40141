"""The worker's kombu Redis channel, on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from queue import Empty
from typing import Any

import pytest
import redis
from kombu import Connection, Producer

from telemetry import transport
from telemetry.deadletters.policy import POLICY_OPTION, PoisonPolicy
from telemetry.messages import HEALTH_TASK
from telemetry.settings import TelemetrySettings
from telemetry.transport.channel import Channel, Transport
from tests.conftest import redis_url
from tests.support.deadletters import records, size
from tests.support.tracing import run_as_producer
from worker.celery_app import app

QUEUE = "transport-test"


def test_tasks_published_consumed_and_acked_share_one_client(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given 20 task messages published, consumed and acknowledged, then the channel
    builds one redis-py client for all of it (plus kombu's own for polling), not one per call."""
    with Connection(redis_url(), transport=Transport) as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        built: list[Any] = []
        client_class = channel.Client

        def counted(**kwargs: Any) -> Any:
            built.append(kwargs)
            return client_class(**kwargs)

        monkeypatch.setattr(channel, "Client", counted)
        producer = Producer(channel)
        sent = [app.send_task(HEALTH_TASK, queue=QUEUE, producer=producer).id for _ in range(20)]
        queue = connection.SimpleQueue(QUEUE, channel=channel)
        received = []
        for _ in range(20):
            message = queue.get(timeout=5)
            received.append(message.headers["id"])
            message.ack()
        assert sorted(received) == sorted(sent)
        assert len(built) <= 2
        assert redis_client.hlen("unacked") == 0


def test_a_new_pool_gets_a_new_client_and_a_given_client_is_used_as_is(
    redis_client: redis.Redis,
) -> None:
    with Connection(redis_url(), transport=Transport) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.connection_pool is channel.pool
        old_pool = channel.pool
        channel._pool = None  # what kombu's _disconnect_pools leaves for a reconnect
        with channel.conn_or_acquire() as third:
            assert third is not first
            assert third.connection_pool is channel.pool and channel.pool is not old_pool
            assert third.ping()
        given = redis.Redis.from_url(redis_url())
        with channel.conn_or_acquire(given) as passed:
            assert passed is given
        given.close()


def test_a_closed_connection_is_a_connection_error_not_a_crash(redis_client: redis.Redis) -> None:
    """Given a channel whose transport has let go of its connection, as after a broker
    fault, when kombu restores or acks through it, then it gets a connection error, which
    its callers handle, instead of an AttributeError that stops the worker."""
    connection = Connection(redis_url(), transport=Transport)
    channel = connection.default_channel
    with channel.conn_or_acquire() as client:
        assert client.ping()
    channel._pool = None
    channel.connection.client = None  # the state a broker SIGKILL left in CI
    with pytest.raises(redis.exceptions.ConnectionError), channel.conn_or_acquire():
        pass
    connection.release()
    with pytest.raises(redis.exceptions.ConnectionError), channel.conn_or_acquire():
        pass


def test_every_connection_uses_ours_even_resolved_before_import_and_after_a_switch() -> None:
    # Given a process that resolved kombu's `redis` transport before importing the worker
    code = (
        "from kombu import Connection\n"
        "from kombu.transport import get_transport_cls\n"
        "stock = get_transport_cls('redis')\n"
        "get_transport_cls('sentinel')\n"
        "import worker\n"
        "from worker.celery_app import app\n"
        "from telemetry.transport.channel import Transport\n"
        "seen = [get_transport_cls('redis') is Transport, stock is not Transport]\n"
        "c = Connection('redis://127.0.0.1:1/0;rediss://127.0.0.1:2/0')\n"
        "seen.append(isinstance(c.transport, Transport))\n"
        # When kombu switches to the next URL of the failover list, as on a connection error
        "c.maybe_switch_next()\n"
        "seen.append(isinstance(c.transport, Transport) and c.as_uri().startswith('rediss://'))\n"
        "seen.append(isinstance(Connection('unix:///tmp/redis.sock').transport, Transport))\n"
        # And a sentinel:// list gets our channel on top of kombu's SentinelChannel
        "from kombu.transport.redis import SentinelChannel as Stock\n"
        "from telemetry.transport.channel import SentinelTransport, Channel\n"
        "s = Connection('sentinel://127.0.0.1:1/0;sentinel://127.0.0.1:2/0')\n"
        "s.maybe_switch_next()\n"
        "seen.append(isinstance(s.transport, SentinelTransport)\n"
        "    and issubclass(s.transport.Channel, Channel) and issubclass(s.transport.Channel, Stock)\n"
        "    and s.as_uri().startswith('sentinel://') and s.as_uri().endswith('127.0.0.1:2/0'))\n"
        "seen.append(app.connection_for_read().as_uri())\n"
        "print(seen)\n"
    )
    seen = run_as_producer({"REDIS_URL": "redis://:secret@127.0.0.1:6379/0"}, code)
    # Then every connection, before and after the switch, uses the validating transport,
    # and the app's URL keeps its scheme with the password masked
    assert seen == "[True, True, True, True, True, True, 'redis://:**@127.0.0.1:6379/0']"


@pytest.fixture
def registered() -> Iterator[None]:
    transport.register("test_channel")
    yield
    transport.unregister("test_channel")


def test_a_consumers_connection_validates_after_a_switch_and_others_deliver_as_kombu(
    registered: None, redis_client: redis.Redis
) -> None:
    """Given a connection carrying a poison policy, as the worker's consumer makes it, on a
    failover list whose first URL is dead; when kombu switches to the next URL, then its
    channel is ours and dead-letters garbage, while a connection without a policy
    delivers what it pops as kombu's own channel does."""
    policy = PoisonPolicy.of(["json"], TelemetrySettings())
    urls = f"redis://127.0.0.1:1/0;{redis_url()}"
    with Connection(urls, transport_options={POLICY_OPTION: policy}) as connection:
        connection.maybe_switch_next()
        channel = connection.default_channel
        assert isinstance(channel, Channel) and channel.poison_policy is policy
        redis_client.lpush(QUEUE, b"garbage")
        with pytest.raises(Empty):
            connection.SimpleQueue(QUEUE, channel=channel).get_nowait()
    found = records(redis_client)
    assert [(r["queue"], r["reason"], r["raw"]) for r in found] == [(QUEUE, "not_json", "garbage")]
    with Connection(redis_url()) as plain:
        assert isinstance(plain.default_channel, Channel)
        assert plain.default_channel.poison_policy is None
        redis_client.lpush(QUEUE, b"garbage")
        with pytest.raises(ValueError):
            plain.SimpleQueue(QUEUE).get_nowait()
    assert size(redis_client) == 1
