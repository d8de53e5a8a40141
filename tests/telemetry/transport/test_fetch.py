"""Reliable fetch on a real Redis: what kombu's BRPOP path did, without its at-most-once window."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Queue
from kombu.transport import redis as kombu_redis

from telemetry.deadletters.policy import DEFAULT_POLICY, POLICY_OPTION
from telemetry.messages import HEALTH_TASK
from telemetry.transport.channel import Transport
from telemetry.transport.fetch import (
    InFlight,
    InFlightKeys,
    retried_once,
    supports_reliable_fetch,
)
from telemetry.transport.poller import BrokerSilent
from telemetry.transport.upkeep import WAIT_SECONDS
from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, redis_url
from tests.support.private_redis import PrivateRedis
from tests.support.tcp_proxy import TcpProxy
from tests.support.worker_process import wait_until
from worker.celery_app import app

QUEUES = ("fetch-a", "fetch-b")


def publish(connection: Connection, queue: str, priority: int | None = None) -> str:
    """A real task message (our channel validates what it takes)."""
    result = app.send_task(HEALTH_TASK, queue=queue, priority=priority, connection=connection)
    return str(result.id)


def consume(
    connection: Connection,
    queues: tuple[str, ...],
    expected: int,
    *,
    no_ack: bool = False,
    until: Callable[[], bool] | None = None,
) -> list[Any]:
    """Drain ``expected`` messages (or until ``until()``), one at a time, acknowledging
    each unless ``no_ack``."""
    got: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        got.append(message)
        if not no_ack:
            message.ack()

    channel = connection.channel()
    channel.basic_qos(0, 1, False)
    with Consumer(
        channel, [Queue(q) for q in queues], callbacks=[on_message], no_ack=no_ack, accept=["json"]
    ):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (until() if until else len(got) >= expected):
            try:
                connection.drain_events(timeout=0.5)
            except TimeoutError:
                continue
    channel.close()
    return got


def start_fetch(channel: Any) -> None:
    """Send the channel's fetch as its poller would; the test reads (or loses) the reply."""
    channel.connection.cycle._register_BRPOP(channel)


def ids(messages: list[Any]) -> list[str]:
    return [message.headers["id"] for message in messages]


def inflight_keys(client: redis.Redis, prefix: str = "") -> list[bytes]:
    return sorted(client.keys(f"{prefix}jobpilot:inflight*"))


@pytest.fixture
def ours(redis_client: redis.Redis) -> Iterator[Callable[..., Connection]]:
    opened: list[Connection] = []

    def open_connection(**options: Any) -> Connection:
        connection = Connection(redis_url(), transport=Transport, transport_options=options)
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        connection.release()


def test_priorities_and_fair_consumption_match_kombu_s_brpop(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    """Given the same messages (two queues, four priorities) consumed through kombu's own
    BRPOP transport and through ours, then both deliver them in the same order."""
    plan = [(q, p) for p in (None, 9, 3, 0, 6) for q in QUEUES] * 2

    def run(connection: Connection) -> list[tuple[str, str]]:
        redis_client.flushdb()
        labels = {publish(connection, q, p): f"{q}/{p}" for q, p in plan}
        return [(labels[i], i) for i in ids(consume(connection, QUEUES, len(plan)))]

    with Connection(redis_url(), transport=kombu_redis.Transport) as stock:
        expected = [label for label, _ in run(stock)]
    got = [label for label, _ in run(ours())]
    assert got == expected
    assert len(got) == len(plan)
    assert redis_client.hlen("unacked") == 0


def test_every_key_carries_the_global_prefix(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    connection = ours(global_keyprefix="pfx:")
    sent = [publish(connection, "fetch-a", p) for p in (None, 9)]
    assert sorted(ids(consume(connection, ("fetch-a",), 2))) == sorted(sent)
    keys = [key.decode() for key in redis_client.keys("*")]
    assert keys and all(key.startswith("pfx:") for key in keys), keys
    assert redis_client.exists("pfx:jobpilot:inflight:parked")
    assert redis_client.hlen("pfx:unacked") == 0


def test_the_unacked_record_is_kombu_s_own(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    """Given one item consumed without an ack by kombu's transport and by ours,
    then both leave the same unacked record and index entry."""
    with Connection(redis_url(), transport=kombu_redis.Transport) as stock:
        publish(stock, "fetch-a")
    item = redis_client.rpop("fetch-a")
    records = []
    for transport in (kombu_redis.Transport, Transport):
        redis_client.delete("unacked", "unacked_index")
        redis_client.lpush("fetch-a", item)
        with Connection(redis_url(), transport=transport) as connection:
            channel = connection.channel()
            message = channel.basic_get("fetch-a")
            assert message is not None
            (tag, record), index = (
                next(iter(redis_client.hgetall("unacked").items())),
                redis_client.zrange("unacked_index", 0, -1),
            )
            assert index == [tag] and tag.decode() == message.delivery_tag
            records.append(json.loads(record))
            channel.do_restore = False  # leave the record as it is for the comparison
            channel.close()
    assert records[0] == records[1]
    assert records[1][0] == json.loads(item)


def test_a_reply_lost_mid_fetch_loses_nothing_and_is_delivered_once(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    connection = ours(health_check_interval=2)
    sent = publish(connection, "fetch-a")
    channel = connection.channel()
    channel.basic_consume("fetch-a", False, lambda message: None, "tag")
    # Given a fetch whose reply never reaches the consumer
    start_fetch(channel)
    wait_until(lambda: redis_client.llen("fetch-a") == 0, 5, message="the item taken")
    channel.client.connection.disconnect()
    # Then the message is in an in-flight list, not lost
    lists = [k for k in inflight_keys(redis_client) if redis_client.type(k) == b"list"]
    assert len(lists) == 1 and redis_client.llen(lists[0]) == 1
    channel.close()
    # And it is back at the head of its queue, unmarked: it was never delivered
    assert redis_client.llen("fetch-a") == 1
    (message,) = consume(connection, ("fetch-a",), 1)
    assert message.headers["id"] == sent
    assert not message.delivery_info.get("redelivered")
    assert redis_client.hlen("unacked") == 0 and redis_client.llen("fetch-a") == 0


def test_a_connection_that_comes_back_gives_its_item_back_first(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    """Given a consumer whose connection broke after a fetch moved an item, when it
    reconnects, then the item is back in its queue and delivered once, before the next."""
    connection = ours()
    first, second = publish(connection, "fetch-a"), publish(connection, "fetch-a")
    got: list[str] = []
    channel = connection.channel()
    channel.basic_consume("fetch-a", False, lambda m: (got.append(m.headers["id"]), m.ack()), "t")
    start_fetch(channel)
    wait_until(lambda: redis_client.llen("fetch-a") == 1, 5, message="one taken")
    channel.client.connection.disconnect()
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        try:
            connection.drain_events(timeout=0.5)
        except TimeoutError:
            continue
    assert got == [first, second]
    channel.close()


def test_a_silent_consumer_s_item_is_swept_back_and_its_late_copy_dropped(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    """Given consumer A, which took an item and then went silent past its deadline,
    when consumer B sweeps, then the item is back in its queue and B runs it; when A
    wakes and reads its reply, its record finds nothing and it delivers nothing."""
    a_got: list[Any] = []
    a = ours(health_check_interval=1)
    sent = publish(a, "fetch-a")
    a_channel = a.channel()
    a_channel.basic_consume("fetch-a", False, a_got.append, "a")
    start_fetch(a_channel)
    wait_until(lambda: redis_client.llen("fetch-a") == 0, 5, message="A took it")
    a_id = a_channel._inflight.id
    redis_client.zadd("jobpilot:inflight:index", {a_id: 0})  # A's deadline passed
    b_channel = ours(health_check_interval=1).channel()
    b_channel._reliable = True
    b_channel.keep_inflight(time.monotonic())
    assert redis_client.llen("fetch-a") == 1
    assert redis_client.zscore("jobpilot:inflight:parked", a_id) is not None
    wait_until(lambda: a_channel.client.connection.can_read(0), 5, message="A's reply")
    with pytest.raises(Empty):
        a_channel._brpop_read()
    assert a_got == []
    (message,) = consume(ours(), ("fetch-a",), 1)
    assert message.headers["id"] == sent
    # And once A's parked time is up, a sweep forgets it
    redis_client.zadd("jobpilot:inflight:parked", {a_id: 0})
    b_channel._kept_at = float("-inf")
    b_channel.keep_inflight(time.monotonic())
    assert redis_client.hget("jobpilot:inflight", a_id) is None
    assert redis_client.zscore("jobpilot:inflight:parked", a_id) is None


def test_a_fetch_holding_an_item_returns_it_again_and_a_record_is_idempotent(
    redis_client: redis.Redis,
) -> None:
    keys = InFlightKeys("", "unacked", "unacked_index", 30)
    inflight = InFlight(keys)
    redis_client.lpush("q", b"first", b"second")
    taken = inflight.fetch(redis_client, ["q"])
    assert taken is not None and (taken.source, taken.item) == ("q", b"first")
    again = inflight.fetch(redis_client, ["q"])
    assert again == taken and redis_client.lrange("q", 0, -1) == [b"second"]
    assert inflight.record(redis_client, "tag-1", "ex", "rk", 1.0)
    assert inflight.record(redis_client, "tag-1", "ex", "rk", 1.0)  # a retry after a lost reply
    assert not inflight.record(redis_client, "tag-2", "ex", "rk", 1.0)  # nothing was taken
    assert redis_client.hget("unacked", "tag-1") == b'[first,"ex","rk"]'
    assert redis_client.llen(inflight.list_key) == 0


def test_scripts_unknown_to_the_server_are_sent_again(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    connection = ours()
    sent = [publish(connection, "fetch-a") for _ in range(2)]
    redis_client.script_flush()
    assert ids(consume(connection, ("fetch-a",), 1)) == sent[:1]
    redis_client.script_flush()
    assert ids(consume(connection, ("fetch-a",), 1)) == sent[1:]


def test_no_ack_consumers_and_dead_letters_leave_nothing_in_flight(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    """A consumer that acknowledges nothing, and an item dead-lettered on a connection
    carrying a poison policy (as the worker's consumer does), leave no in-flight item."""
    connection = ours(**{POLICY_OPTION: DEFAULT_POLICY})
    sent = publish(connection, "fetch-a")
    redis_client.lpush("fetch-b", b"not json")
    assert ids(consume(connection, ("fetch-a",), 1, no_ack=True)) == [sent]
    dead_lettered = lambda: redis_client.hlen("jobpilot:deadletter:records") == 1  # noqa: E731
    assert consume(connection, ("fetch-b",), 0, until=dead_lettered) == []
    assert redis_client.hlen("unacked") == 0
    assert not [k for k in inflight_keys(redis_client) if redis_client.type(k) == b"list"]


def test_garbage_without_a_poison_policy_fails_as_kombu_does_and_is_not_taken_again(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    """Without a policy the channel parses as kombu does, which raises on garbage; kombu's
    BRPOP would have lost the item, so it is dropped rather than returned at every fetch."""
    connection = ours()
    redis_client.lpush("fetch-b", b"not json")
    sent = publish(connection, "fetch-b")
    with pytest.raises(ValueError):
        consume(connection, ("fetch-b",), 1)
    assert ids(consume(connection, ("fetch-b",), 1)) == [sent]
    assert not [k for k in inflight_keys(redis_client) if redis_client.type(k) == b"list"]


def test_basic_get_takes_reliably_with_and_without_acks(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    connection = ours()
    first, second = publish(connection, "fetch-a"), publish(connection, "fetch-a")
    channel = connection.channel()
    message = channel.basic_get("fetch-a")
    assert message.headers["id"] == first and redis_client.hlen("unacked") == 1
    message.ack()
    assert redis_client.hlen("unacked") == 0
    unacked = channel.basic_get("fetch-a", no_ack=True)
    assert unacked.headers["id"] == second and redis_client.hlen("unacked") == 0
    assert channel.basic_get("fetch-a") is None


def test_reliable_fetch_off_keeps_kombu_s_brpop(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    connection = ours(reliable_fetch=False)
    sent = publish(connection, "fetch-a")
    assert ids(consume(connection, ("fetch-a",), 1)) == [sent]
    assert inflight_keys(redis_client) == []


@pytest.mark.parametrize(
    ("version", "supported"),
    [("6.2.14", False), ("7.0.15", True), ("7.2.4", True), ("8.0.2", True), ("", False)],
)
def test_reliable_fetch_needs_redis_7(version: str, supported: bool) -> None:
    class Server:
        def info(self, section: str) -> dict[str, str]:
            return {"redis_version": version}

    assert supports_reliable_fetch(Server()) is supported  # type: ignore[arg-type]


def test_an_idempotent_operation_is_retried_once_after_the_idle_connections_go() -> None:
    calls: list[str] = []

    def flaky() -> str:
        calls.append("try")
        if len(calls) == 1:
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        return "done"

    assert retried_once(lambda: calls.append("reset"), flaky) == "done"
    assert calls == ["try", "reset", "try"]

    def dead() -> str:
        raise redis.exceptions.ConnectionError("gone")

    with pytest.raises(redis.exceptions.ConnectionError):
        retried_once(lambda: None, dead)


def test_a_silent_consuming_connection_is_a_lost_connection(
    redis_client: redis.Redis, ours: Callable[..., Connection]
) -> None:
    """Given a consumer waiting through a relay that goes silent (connections open, no
    answer), then within the wait plus health_check_interval, plus a second (the check's
    period) and a socket timeout (a sweep caught in the silence), the transport raises a
    connection error for the consumer, having closed the channel's connections."""
    proxy = TcpProxy(REDIS_PORT, REDIS_HOST).start()
    try:
        url = f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}"
        with Connection(
            url,
            transport=Transport,
            transport_options={"health_check_interval": 1, "socket_timeout": 1},
        ) as connection:
            consume(connection, ("fetch-a",), 0)
            channel = connection.channel()
            channel.basic_consume("fetch-a", False, lambda message: None, "tag")
            with pytest.raises(TimeoutError):
                connection.drain_events(timeout=0.5)
            proxy.silence()
            silenced = time.monotonic()
            with pytest.raises(BrokerSilent, match="no reply from the broker"):
                while time.monotonic() - silenced < 10:
                    with contextlib.suppress(TimeoutError):
                        connection.drain_events(timeout=0.2)
            noticed = time.monotonic() - silenced
            assert 0.25 + 1 <= noticed <= 0.25 + 1 + 1 + 1 + 0.5, noticed
            assert channel.client.connection._sock is None
    finally:
        proxy.stop()


def fetches(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


def test_a_full_broker_is_still_drained(tmp_path: Path) -> None:
    """Given a consumer of a broker that then reaches maxmemory with noeviction, which
    refuses every write that grows memory (kombu's own unacked record among them), then
    the consumer still takes, records and acknowledges every queued message, and then
    waits without spinning."""
    server = PrivateRedis(tmp_path, None, "--maxmemory-policy", "noeviction").start()
    try:
        client = redis.Redis(port=server.port)
        with Connection(server.url, transport=Transport) as connection:
            sent = [publish(connection, "fetch-a") for _ in range(20)]
            got: list[str] = []
            channel = connection.channel()
            channel.basic_qos(0, 1, False)
            consumer = Consumer(
                channel,
                [Queue("fetch-a")],
                callbacks=[lambda body, m: (got.append(m.headers["id"]), m.ack())],
                accept=["json"],
            )
            consumer.consume()
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", used + 200_000)
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                for n in range(10_000):
                    client.set(f"filler:{n}", b"x" * 10_000)
            deadline = time.monotonic() + 10
            while len(got) < 20 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=0.5)
            assert got == sent
            assert client.hlen("unacked") == 0
            before = fetches(client)
            with pytest.raises(TimeoutError):
                connection.drain_events(timeout=1)
            # a refused wait sleeps on the server instead of spinning: one fetch per wait
            assert fetches(client) - before <= 1 / WAIT_SECONDS + 1
    finally:
        server.stop()
