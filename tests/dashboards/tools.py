"""The real Prometheus binaries; tests that need them skip loudly when absent."""

from __future__ import annotations

import shutil

import pytest

INSTALL_HINT = "apt-get install prometheus (.ci/run does)"


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"SKIPPED LOUDLY: `{name}` is not installed; {INSTALL_HINT}")
    return path
