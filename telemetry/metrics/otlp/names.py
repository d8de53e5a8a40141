"""The OTLP metrics: names, instruments, units, descriptions and the Prometheus series behind each.

The messaging names and attributes are the semantic conventions' (constants from
``opentelemetry.semconv``); the Celery-specific ones are ours, in the same style.
Every point carries ``messaging.system`` (the broker: ``redis``, as the semantic
conventions' maintainers ruled in semantic-conventions #1954) and
``messaging.destination.name`` (the queue, ``other`` for a queue the worker does
not declare, as on ``/metrics``); the per-task ones also ``celery.task.name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_OPERATION_NAME,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
)
from opentelemetry.semconv._incubating.metrics.messaging_metrics import (
    MESSAGING_CLIENT_CONSUMED_MESSAGES,
    MESSAGING_CLIENT_SENT_MESSAGES,
    MESSAGING_PROCESS_DURATION,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from telemetry.tracing.attributes import INSTRUMENTATION, TASK_NAME, TASK_OUTCOME

SYSTEM = MESSAGING_SYSTEM
DESTINATION = MESSAGING_DESTINATION_NAME
OPERATION = MESSAGING_OPERATION_NAME
ERROR = ERROR_TYPE
#: ``messaging.operation.name`` of a delivery (counted once, at receipt) and of its run.
PROCESS = MessagingOperationTypeValues.PROCESS.value
#: ``messaging.operation.name`` of a publish.
SEND = MessagingOperationTypeValues.SEND.value
TASK = TASK_NAME
OUTCOME = TASK_OUTCOME

#: The instrumentation scope of every point, as of every span.
SCOPE = INSTRUMENTATION


@dataclass(frozen=True)
class Instrument:
    """One OTLP metric and the ``/metrics`` series it is derived from."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    unit: str
    description: str
    source: str


PROCESS_DURATION = Instrument(
    MESSAGING_PROCESS_DURATION,
    "histogram",
    "s",
    "Duration of processing operation: a task's run, from its start to its outcome.",
    "celery_task_runtime_seconds",
)
CONSUMED_MESSAGES = Instrument(
    MESSAGING_CLIENT_CONSUMED_MESSAGES,
    "counter",
    "{message}",
    "Number of messages that were delivered to the application.",
    "celery_task_received_total",
)
SENT_MESSAGES = Instrument(
    MESSAGING_CLIENT_SENT_MESSAGES,
    "counter",
    "{message}",
    "Number of messages producer attempted to send to the broker.",
    "celery_task_published_total",
)
QUEUE_DEPTH = Instrument(
    "celery.queue.depth",
    "gauge",
    "{message}",
    "Messages waiting in the queue; every reporter sends the same value, so aggregate with max.",
    "celery_queue_depth",
)
QUEUE_OLDEST_AGE = Instrument(
    "celery.queue.oldest_message.age",
    "gauge",
    "s",
    "Age of the queue's oldest waiting message, 0 when it is empty; aggregate with max.",
    "celery_queue_oldest_message_age_seconds",
)
QUEUE_WAIT_DURATION = Instrument(
    "celery.task.queue_wait.duration",
    "histogram",
    "s",
    "Time from publish to start, minus any ETA or countdown delay.",
    "celery_task_queue_wait_seconds",
)
TASK_FINISHED = Instrument(
    "celery.task.finished",
    "counter",
    "{task}",
    "Task deliveries ended, by outcome; every delivery ends in exactly one.",
    "celery_task_finished_total",
)

#: Every metric the export may send.
INSTRUMENTS = (
    PROCESS_DURATION,
    CONSUMED_MESSAGES,
    SENT_MESSAGES,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    QUEUE_WAIT_DURATION,
    TASK_FINISHED,
)
