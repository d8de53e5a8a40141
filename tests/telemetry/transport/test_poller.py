"""When the transport gives up a connection, on kombu's real channels and a real Redis."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Queue

from telemetry.transport.channel import Transport
from telemetry.transport.poller import BrokerSilent, Poller
from tests.conftest import redis_url


@pytest.fixture
def connection(redis_client: redis.Redis) -> Iterator[Connection]:
    with Connection(
        redis_url(), transport=Transport, transport_options={"health_check_interval": 1}
    ) as opened:
        yield opened


def listening(connection: Connection) -> tuple[Poller, object]:
    """A channel consuming a fanout queue, as the worker's control channel does."""
    channel = connection.channel()
    queue = Queue("poller-bcast", Exchange("poller-bcast", type="fanout"), auto_delete=True)
    Consumer(channel, [queue], callbacks=[lambda body, message: None], no_ack=True).consume()
    with contextlib.suppress(TimeoutError):  # reads the subscription's confirmation
        connection.drain_events(timeout=0.3)
    poller = connection.transport.cycle
    assert isinstance(poller, Poller) and channel.__dict__.get("subclient") is not None
    return poller, channel


def test_two_unanswered_pub_sub_pings_are_a_lost_connection(connection: Connection) -> None:
    poller, channel = listening(connection)
    subclient = channel.__dict__["subclient"]
    poller.maybe_check_subclient_health()  # answered ones are fine
    subclient.health_check_response_counter = 2  # as after two PINGs that got no PONG
    with pytest.raises(BrokerSilent, match="no reply to 2 health checks"):
        poller.maybe_check_subclient_health()
    assert channel._abandoned and subclient.connection._sock is None


def test_a_pub_sub_ping_that_cannot_be_sent_is_a_lost_connection(connection: Connection) -> None:
    poller, channel = listening(connection)
    subclient = channel.__dict__["subclient"]
    subclient.connection._sock.shutdown(2)  # what keepalive leaves of a dead peer's socket
    subclient.connection.next_health_check = 0
    with pytest.raises(BrokerSilent, match="a pub/sub health check failed"):
        poller.maybe_check_subclient_health()


def test_a_command_failing_on_a_fresh_connection_too_is_raised_at_the_next_check(
    connection: Connection,
) -> None:
    """Given an ack that failed on a fresh connection too, then the next command of any
    channel there fails at once (no connect timeout each), the next check raises the
    loss, and a channel opened afterwards (a reconnect) is not affected."""
    channel = connection.channel()
    poller = connection.transport.cycle

    def dead() -> None:
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    with pytest.raises(redis.exceptions.TimeoutError):
        channel.retried(dead)
    started = time.monotonic()
    with (
        pytest.raises(redis.exceptions.ConnectionError, match="does not answer"),
        channel.conn_or_acquire() as client,
    ):
        client.ping()
    assert time.monotonic() - started < 0.1
    with pytest.raises(BrokerSilent, match="failed on a fresh connection"):
        poller.maybe_check_brpop_health()
    poller.maybe_check_brpop_health()  # raised once
    fresh = connection.channel()
    with fresh.conn_or_acquire() as client:
        assert client.ping()


def test_closing_after_a_loss_asks_once_whether_the_broker_answers(
    connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = connection.channel(), connection.channel()
    poller = connection.transport.cycle
    probes: list[bool] = []
    monkeypatch.setattr(type(first), "_probe", lambda self: probes.append(True) or True)
    poller.abandon()
    for channel in (first, second):
        with channel.conn_or_acquire() as client:
            assert client.ping()  # the broker answers: closing may restore and give back
    assert probes == [True]
