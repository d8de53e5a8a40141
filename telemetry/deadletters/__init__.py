"""Dead letters: messages the worker cannot run are moved, never dropped.

Redis has no dead-letter exchange, so the worker keeps one on the broker: the
``dead_letter`` kind of the failed-work set (``telemetry.failed``), capped, by
stable id. Two interception points feed it:

* ``transport`` validates every item kombu pops, before a Message exists;
* ``consumer`` and ``request`` catch what only the worker can judge (unknown
  tasks, arguments that do not bind, ``Reject``, pool processes lost too often).

``python -m telemetry.failed -A app list|show|groups|requeue|delete`` inspects and replays it.
"""
