"""The operator API for failed work, served by the broker exporter on ``OPS_HOST:OPS_PORT``.

``server`` routes and bounds requests, ``bodies`` validates their input,
``access`` decides who may read and write, ``audit`` records every write. What
the API does is ``telemetry.failed.operations``'s, shared with the CLI.
"""
