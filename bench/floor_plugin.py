"""``celery -A worker worker ... --include bench.floor_plugin``: installs :mod:`bench.floors`."""

from bench.floors import install

install()
