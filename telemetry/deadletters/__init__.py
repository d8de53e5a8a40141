"""Dead letters: messages the worker cannot run are moved, never dropped.

Redis has no dead-letter exchange, so the worker keeps one: a capped Redis list
``<BROKER_KEY_PREFIX>jobpilot:deadletter`` on the broker. Two interception
points feed it:

* ``transport`` validates every item kombu pops, before a Message exists;
* ``consumer`` and ``request`` catch what only the worker can judge (unknown
  tasks, arguments that do not bind, ``Reject``, pool processes lost too often).

``python -m telemetry.deadletters list|show|requeue|purge`` inspects and replays it.
"""
