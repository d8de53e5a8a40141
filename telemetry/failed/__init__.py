"""Failed work you can act on: dead letters and exhausted tasks, by stable id, on the broker.

    python -m telemetry.failed -A yourmodule list --kind exhausted --task send_invoice
    python -m telemetry.failed -A yourmodule requeue --task send_invoice --dry-run

Two kinds of record (``records``) share one store layout (``store``, ``scripts``):

* ``dead_letter``: a message the worker could not run (``telemetry.deadletters``);
* ``exhausted``: a task whose final attempt failed and whose message was
  acknowledged, so nothing would run it again (``exhausted``, ``capture``);
  turned on with ``telemetry.install(app, exhausted=True)``.

``query`` filters and pages them, ``requeue`` puts a record's message back on
its queue in one Lua script, and ``operations`` is what the operator API
(``telemetry.ops``) and the CLI (``python -m telemetry.failed``) both call.
"""
