"""The export process's environment: opentelemetry-instrument's sitecustomize is left out."""

from __future__ import annotations

import os

from telemetry.tracing.export.supervisor import export_environment

AUTO = os.path.join("/venv", "site-packages", "opentelemetry", "instrumentation", "auto_instrumentation")  # fmt: skip


def test_the_auto_instrumentation_directory_is_left_off_pythonpath() -> None:
    environ = {"PYTHONPATH": os.pathsep.join([AUTO, "/app", "/lib"]), "OTEL_SERVICE_NAME": "x"}
    assert export_environment(environ) == {"PYTHONPATH": f"/app{os.pathsep}/lib", "OTEL_SERVICE_NAME": "x"}  # fmt: skip
    assert export_environment({"PYTHONPATH": AUTO + os.sep}) == {}


def test_any_other_environment_is_passed_as_it_is() -> None:
    environ = {"PYTHONPATH": "/app", "PATH": "/bin"}
    assert export_environment(environ) == environ
    assert export_environment({"PATH": "/bin"}) == {"PATH": "/bin"}
