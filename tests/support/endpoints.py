"""Reading HTTP endpoints in tests (a worker's, a beat's, the exporter's): any status, with its body."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.support.worker_process import WorkerProcess, wait_until


def http_get(url: str, accept: str = "") -> tuple[int, bytes]:
    """(status, body) of ``url``; an error status (503, 404) is an answer, not an exception."""
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def fetch(worker: WorkerProcess, path: str, accept: str = "") -> tuple[int, bytes]:
    """(status, body) of ``path`` on the worker's metrics port; 503 is an answer, not an error."""
    try:
        return http_get(worker.metrics_url.replace("/metrics", path), accept)
    except urllib.error.URLError as error:
        exit_code = worker.process.poll() if worker.process is not None else None
        raise AssertionError(
            f"{path} unreachable ({error.reason}); worker exit code {exit_code}"
        ) from error


def readyz(worker: WorkerProcess) -> tuple[int, dict[str, Any]]:
    """(status, the decoded /readyz body)."""
    status, body = fetch(worker, "/readyz")
    return status, json.loads(body)


def ready_body(worker: WorkerProcess, timeout: float = 20) -> dict[str, Any]:
    """The /readyz body once it is 200 (every check's first probe in)."""
    _, body = wait_until(
        lambda: (r := readyz(worker))[0] == 200 and r, timeout, interval=0.2, message="/readyz 200"
    )
    return dict(body)
