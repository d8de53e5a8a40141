"""What a beat process holds and starts, from ``Service.start`` to its end.

``BeatMonitor.start`` (before Service.start's loop): every entry's series at
zero, bind ``METRICS_HOST:BEAT_METRICS_PORT`` (a taken port is one line and a
non-zero exit), start the readiness probe and the heartbeat, hook the loop and
serve. ``send`` wraps each publish (``Scheduler.apply_async``); after each tick
the entries are followed. ``stop`` (when Service.start returns) undoes it all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import celery
from celery import Celery
from celery import beat as celery_beat
from celery.utils.imports import qualname
from prometheus_client import CollectorRegistry, disable_created_metrics

from telemetry.beat import schedules
from telemetry.beat.entries import entry_source
from telemetry.beat.health import BeatLiveness, SchedulerCheck, liveness_timeout
from telemetry.beat.heartbeat import Heartbeat, HeartbeatKeys, heartbeat_interval
from telemetry.beat.loop import STALE, BeatLoop
from telemetry.beat.schedules import SendPlan
from telemetry.beat.series import EntrySeries
from telemetry.broker import broker_redis, redis_broker
from telemetry.endpoints import RenderCache, TelemetryServer
from telemetry.log_throttle import LogThrottle
from telemetry.metrics.beat_catalogue import BeatMetrics
from telemetry.readiness.checks import BrokerCheck, Check
from telemetry.readiness.probe import ReadinessProbe
from telemetry.settings import TelemetrySettings

logger = logging.getLogger("telemetry.beat")

UNKNOWN_QUEUE = "unknown"


@dataclass(frozen=True)
class Pending:
    """A send under way: its entry, what it stands for, and when it was decided and started."""

    entry: Any
    plan: SendPlan
    decided_at: float
    started_at: float
    advance: bool


def queue_of(app: Celery, entry: Any) -> str:
    """The queue the entry's task is routed to, as ``send_task`` would route it."""
    try:
        options = dict(entry.options or {})
        task = app.tasks.get(entry.task)
        if task is not None and getattr(task, "queue", None):
            options.setdefault("queue", task.queue)
        queue = options.get("queue")
        if isinstance(queue, str):
            return queue
        if queue is not None:
            return str(queue.name)
        return str(app.amqp.router.route(options, entry.task)["queue"].name)
    except Exception:
        return UNKNOWN_QUEUE


class BeatMonitor:
    """Everything the telemetry holds for one running beat of ``service.app``."""

    def __init__(self, service: Any, settings: TelemetrySettings) -> None:
        self.service = service
        self.app: Celery = service.app
        self.settings = settings
        # Built here as Service.start's own first lines would: the series need its entries.
        self.scheduler = service.scheduler
        self.registry = CollectorRegistry()
        self.metrics = BeatMetrics(self.registry)
        self.loop = BeatLoop(
            service,
            self.scheduler,
            liveness_timeout(settings, self.app, self.scheduler),
            self._after_tick,
        )
        self.series = EntrySeries(
            self.metrics, settings.beat_max_entries, lambda entry: queue_of(self.app, entry)
        )
        self.entries = entry_source(self.scheduler)
        self.server: TelemetryServer | None = None
        self.probe: ReadinessProbe | None = None
        self.heartbeat: Heartbeat | None = None
        self._log = LogThrottle()
        self._estimate_logged = False
        self._heartbeat_woken = False
        #: Entries sent (or tried) since this beat became active: the first is the catch-up.
        self._sent_since_active: set[str] = set()
        self._deadline: float | None = self.app.conf.beat_cron_starting_deadline

    # before the loop -----------------------------------------------------------
    def start(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        metrics, loop = self.metrics, self.loop
        metrics.info.labels(celery.__version__, qualname(type(self.scheduler))).set(1)
        metrics.liveness_timeout.set(loop.timeout)
        metrics.active.set_function(lambda: 1 if loop.active else 0)
        metrics.tick_timestamp.set_function(loop.tick_timestamp)
        metrics.instances.set(0)
        try:
            self.series.sync(self.entries.read(), time.time())
        except Exception as exc:  # the series then come with the first ticks and sends
            logger.warning("beat telemetry: cannot read the schedule: %s", type(exc).__name__)
        settings = self.settings
        redis = redis_broker(self.app)
        self.probe = self._readiness(redis)
        try:
            self.server = TelemetryServer(
                settings.metrics_host,
                settings.beat_metrics_port,
                RenderCache(self.registry, settings.metrics_render_interval),
                BeatLiveness(loop),
                self.probe,
            )
        except OSError as exc:
            raise SystemExit(
                f"metrics: cannot listen on {settings.metrics_host}:{settings.beat_metrics_port}: "
                f"{exc.strerror or exc}"
            ) from None
        self.probe.start()
        if redis:
            self._start_heartbeat()
        else:
            metrics.instances.set_function(lambda: 1 if loop.active else 0)
        loop.hook()
        self.server.start()
        host, port = self.server.address
        logger.info(
            "telemetry: beat serves /metrics, /livez and /readyz on http://%s:%d", host, port
        )
        if not redis:
            logger.info(
                "telemetry: the broker is not Redis: no broker check, and other beats are not seen"
            )

    def _readiness(self, redis: bool) -> ReadinessProbe:
        checks: list[Check] = [SchedulerCheck(self.loop)]
        if redis:
            checks.insert(0, BrokerCheck.for_app(self.app, lambda _: None))
        return ReadinessProbe(
            checks,
            frozenset(check.name for check in checks),
            self.settings.readiness_interval,
            self.metrics.readiness_check_up,
            self.metrics.ready,
        )

    def _start_heartbeat(self) -> None:
        options = self.app.conf.broker_transport_options or {}
        keys = HeartbeatKeys.for_beat(
            str(options.get("global_keyprefix") or ""),
            str(self.app.main or "celery"),
            celery_beat.beat_nodename(self.service.hostname),
        )
        loop = self.loop
        self.heartbeat = Heartbeat(
            lambda: broker_redis(self.app),
            keys,
            heartbeat_interval(float(self.scheduler.max_interval)),
            lambda: loop.active and loop.phase() != STALE,
            self.metrics.instances,
            {
                "node": celery_beat.beat_nodename(self.service.hostname),
                "scheduler": qualname(type(self.scheduler)),
            },
        )
        self.heartbeat.start()

    # beat's thread ----------------------------------------------------------------
    def _after_tick(self, now: float) -> None:
        if self.heartbeat is not None and not self._heartbeat_woken:
            self._heartbeat_woken = True  # counted at once, not a heartbeat interval later
            self.heartbeat.wake()
        entries = self.entries.changed(now)
        if entries is not None:
            self.series.sync(entries, now, known_too=self.entries.edits)
            # An entry that left the schedule is forgotten: a schedule whose entries come
            # and go (django-celery-beat, RedBeat) never grows this set without bound.
            self._sent_since_active.intersection_update(entries)

    def send(
        self,
        apply_async: Callable[..., Any],
        scheduler: Any,
        entry: Any,
        producer: Any,
        advance: bool,
        **kwargs: Any,
    ) -> Any:
        """``Scheduler.apply_async`` for this beat's scheduler: the send, counted around it."""
        pending = self._guarded(self._before_send, entry, advance)
        try:
            result = apply_async(scheduler, entry, producer, advance, **kwargs)
        except Exception:
            if pending is not None:
                self._guarded(self._after_send, pending, False)
            raise
        if pending is not None:
            self._guarded(self._after_send, pending, True)
        return result

    def _before_send(self, entry: Any, advance: bool) -> Pending:
        now = time.time()
        loop = self.loop
        decided = loop.tick_started or now
        name = str(entry.name)
        first = name not in self._sent_since_active
        self._sent_since_active.add(name)
        plan = schedules.plan_send(
            entry.schedule,
            entry.last_run_at,
            decided,
            active_since=(loop.active_since or decided) if first else None,
            deadline=self._deadline,
        )
        return Pending(entry, plan, decided, now, advance)

    def _after_send(self, pending: Pending, ok: bool) -> None:
        entry, plan = pending.entry, pending.plan
        # The new last run: reserved in the tick before the send, or by apply_async itself.
        reserved = pending.started_at if pending.advance else pending.decided_at
        now = time.time()
        next_at = schedules.next_due(entry.schedule, datetime.fromtimestamp(reserved, UTC), now)
        period = schedules.interval(entry.schedule, now, next_at)
        if ok:
            self.series.sent(entry, plan, pending.started_at, next_at, period)
        else:
            self.series.failed(entry, plan, pending.started_at, next_at, period)
        if plan.estimated and not self._estimate_logged:
            self._estimate_logged = True
            logger.warning(
                "beat: %r has over %d due times since its last run: its missed count is an estimate",
                entry.name,
                schedules.MAX_ENUMERATED,
            )

    def _guarded(self, step: Callable[..., Any], *args: Any) -> Any:
        """Telemetry never breaks a send: a failure is logged (once a minute at most) and skipped."""
        try:
            return step(*args)
        except Exception as exc:
            if self._log.due():
                logger.warning("beat telemetry skipped a send: %s", type(exc).__name__)
            return None

    # when Service.start returns -------------------------------------------------------
    def stop(self) -> None:
        self.loop.unhook()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.probe is not None:
            self.probe.stop()
        if self.server is not None:
            self.server.stop()
