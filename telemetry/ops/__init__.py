"""The operator API for failed work and its page, served by the broker exporter on ``OPS_HOST:OPS_PORT``.

``server`` answers the routes, ``handler`` speaks HTTP (limits, headers),
``bodies`` validates input, ``access`` decides who may read and write,
``audit`` records every write, and ``page`` serves ``/failed``: one HTML file,
its script and its style (``static/``). What the API does is
``telemetry.failed.operations``'s, shared with the CLI.
"""
