"""A task whose own retry delay outlasts MAX_RETRY_COUNTDOWN: the worker must refuse to start.

``celery -A worker worker --include tests.support.slow_retry`` in the retry-policy test only.
"""

from __future__ import annotations

from worker.celery_app import app


@app.task(name="tests.slow_retry", default_retry_delay=900)
def slow_retry() -> None:
    """Never runs: the worker refuses to start with it."""
