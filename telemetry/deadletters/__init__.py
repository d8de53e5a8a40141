"""Dead letters: messages the worker cannot run are moved, never dropped (poison safety).

``telemetry.install(app)`` switches it on for any app (``safety``). Redis has no
dead-letter exchange, so the worker keeps one on the broker: the ``dead_letter``
kind of the failed-work set (``telemetry.failed``), capped, by stable id, under
``<BROKER_KEY_PREFIX>jobpilot:deadletter``. Interception points feed it, each
judging by the app's own ``accept_content`` (``policy``):

* the channel (``telemetry.transport``) validates every item the worker's
  consumer pops, before a Message exists (``validation``);
* ``consumer`` and ``request`` catch what only the worker can judge (unknown
  tasks, bodies kombu decoded, arguments that do not bind (``arguments``),
  ``Reject``, pool processes lost too often).

``python -m telemetry.failed -A yourmodule list|show|groups|requeue|delete`` inspects and replays it.
"""
