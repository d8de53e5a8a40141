"""The names on this package's spans: span attributes, from the messaging semantic conventions.

Every span carries ``messaging.system`` (the broker, from the app's kombu driver:
``redis``, ``rabbitmq``, ``aws_sqs``; the semantic conventions do not take
``celery`` as a messaging system), ``messaging.destination.name``,
``messaging.operation.type``, ``messaging.message.id``, ``celery.task.name``,
``celery.task.retries`` and, on consumer and main-process spans,
``celery.task.outcome``. Arguments are recorded only with ``TRACE_TASK_ARGS=true``,
on ``run`` spans, as ``celery.task.args``/``celery.task.kwargs`` truncated to
``MAX_ARGS_LENGTH`` characters.
"""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
    MessagingSystemValues,
)

from telemetry.delivery.observers import FAILED, RETRIED, SUCCEEDED

SYSTEM = MESSAGING_SYSTEM
DESTINATION = MESSAGING_DESTINATION_NAME
OPERATION = MESSAGING_OPERATION_TYPE
MESSAGE_ID = MESSAGING_MESSAGE_ID
SEND = MessagingOperationTypeValues.SEND.value
PROCESS = MessagingOperationTypeValues.PROCESS.value
#: ``messaging.system`` by kombu driver type; any other driver is named as kombu names it.
SYSTEMS = {
    "redis": "redis",
    "amqp": MessagingSystemValues.RABBITMQ.value,
    "sqs": MessagingSystemValues.AWS_SQS.value,
}
TASK_NAME = "celery.task.name"
TASK_RETRIES = "celery.task.retries"
TASK_OUTCOME = "celery.task.outcome"
#: Only with TRACE_TASK_ARGS=true, truncated to MAX_ARGS_LENGTH characters.
TASK_ARGS = "celery.task.args"
TASK_KWARGS = "celery.task.kwargs"
MAX_ARGS_LENGTH = 256
INSTRUMENTATION = "jobpilot.telemetry"
#: A run span's outcome by the task state Celery's tracer ended in; any other is failed.
STATE_OUTCOMES = {"SUCCESS": SUCCEEDED, "FAILURE": FAILED, "RETRY": RETRIED, "IGNORED": SUCCEEDED}


def messaging_system(driver_type: str) -> str:
    """The ``messaging.system`` of a kombu transport's ``driver_type``."""
    return SYSTEMS.get(driver_type, driver_type)
