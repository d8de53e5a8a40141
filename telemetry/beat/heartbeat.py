"""How many beats of an app send now: a heartbeat key each on the broker, counted by every beat.

    heartbeat = Heartbeat(connect, keys, interval, sending, gauge)
    heartbeat.start()      # a thread: refresh this beat's key while it sends, count the app's keys
    heartbeat.wake()       # refresh now (this beat just became active)
    heartbeat.stop()       # delete this beat's key

The keys live under the app's kombu ``global_keyprefix``:
``<prefix>celery-beat:<app main name>:<beat node name>:<random id>``, one per
beat process (the id is drawn at start, so two beats on one host differ), each
listed in the set ``<prefix>celery-beat:<app main name>``. A beat refreshes its
key while it sends and its loop turns within the liveness timeout, so a
standby, a stopped or a wedged beat is not counted. A key expires three
heartbeat intervals after its last refresh (a crashed beat), and a beat that
stops deletes its own. RedBeat's default lock timeout, five max intervals,
outlasts a key, so a standby that takes over is never counted beside its
crashed predecessor.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis
from prometheus_client import Gauge

from telemetry.log_throttle import LogThrottle

logger = logging.getLogger("telemetry.beat")

KEY_PREFIX = "celery-beat"
#: Refreshed at least this often: a crashed beat leaves the count within three.
MAX_INTERVAL_SECONDS = 5.0
MIN_INTERVAL_SECONDS = 0.5
#: Heartbeat intervals a key outlives its last refresh.
TTL_INTERVALS = 3


@dataclass(frozen=True)
class HeartbeatKeys:
    """This beat's key and its app's set of keys."""

    key: str
    index: str

    @classmethod
    def for_beat(cls, prefix: str, app_name: str, node: str) -> HeartbeatKeys:
        index = f"{prefix}{KEY_PREFIX}:{app_name}"
        return cls(f"{index}:{node}:{uuid.uuid4().hex[:12]}", index)


def heartbeat_interval(max_interval: float) -> float:
    """The scheduler's max interval, between half a second and five seconds."""
    return min(MAX_INTERVAL_SECONDS, max(MIN_INTERVAL_SECONDS, max_interval))


class Heartbeat:
    def __init__(
        self,
        connect: Callable[[], redis.Redis],
        keys: HeartbeatKeys,
        interval: float,
        sending: Callable[[], bool],
        instances: Gauge,
        identity: dict[str, str],
    ) -> None:
        self.connect = connect
        self.keys = keys
        self.interval = interval
        self.ttl_ms = int(TTL_INTERVALS * interval * 1000)
        self.sending = sending
        self.instances = instances
        self.value = json.dumps({**identity, "pid": os.getpid()})
        self._client: redis.Redis | None = None
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = LogThrottle()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="beat-heartbeat", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        try:
            client = self._connected()
            with client.pipeline() as pipe:
                pipe.delete(self.keys.key)
                pipe.srem(self.keys.index, self.keys.key)
                pipe.execute()
        except Exception as exc:
            logger.warning("beat heartbeat: its key stays until it expires: %s", type(exc).__name__)
        finally:
            if self._client is not None:
                self._client.close()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self.beat()
            except Exception as exc:  # a heartbeat failure never stops the next one
                if self._log.due():
                    logger.warning("beat heartbeat failed: %s", type(exc).__name__)
            self._wake.wait(self.interval)
            self._wake.clear()

    def beat(self) -> int:
        """Refresh this beat's key if it sends; count the app's live keys into the gauge."""
        client = self._connected()
        keys = self.keys
        if self.sending():
            with client.pipeline() as pipe:
                pipe.set(keys.key, self.value, px=self.ttl_ms)
                pipe.sadd(keys.index, keys.key)
                pipe.pexpire(keys.index, self.ttl_ms)
                pipe.execute()
        members = sorted(
            m.decode() if isinstance(m, bytes) else str(m) for m in client.smembers(keys.index)
        )
        with client.pipeline() as pipe:
            for member in members:
                pipe.exists(member)
            alive = pipe.execute()
        gone = [member for member, exists in zip(members, alive, strict=True) if not exists]
        if gone:
            client.srem(keys.index, *gone)
        count = len(members) - len(gone)
        self.instances.set(count)
        return count

    def _connected(self) -> redis.Redis:
        if self._client is None:
            self._client = self.connect()
        return self._client
