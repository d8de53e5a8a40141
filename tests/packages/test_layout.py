"""The two distributions of this repository agree with each other, offline."""

from __future__ import annotations

import tomllib
from typing import Any

from packaging.requirements import Requirement

from telemetry.version import __version__ as telemetry_version
from tests.support.worker_process import ROOT

PACKAGE = ROOT / "packages" / "jobpilot-telemetry"


def project(path: str) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((ROOT / path / "pyproject.toml").read_text())
    return data


def test_the_worker_requires_the_telemetry_of_this_checkout() -> None:
    worker = project(".")["project"]
    lines = [*worker["dependencies"], *worker["optional-dependencies"]["grpc"]]
    pins = [r for r in map(Requirement, lines) if r.name == "jobpilot-telemetry"]
    assert {str(r.specifier) for r in pins} == {f"=={telemetry_version}"}
    assert [sorted(r.extras) for r in pins] == [["sqlalchemy"], ["grpc"]]


def test_the_distribution_builds_the_repositorys_own_package() -> None:
    telemetry = project("packages/jobpilot-telemetry")
    assert telemetry["project"]["name"] == "jobpilot-telemetry"
    assert telemetry["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "telemetry.version.__version__"
    }
    # One home for the code: the distribution's package is the repository's telemetry/
    assert (PACKAGE / "telemetry").is_symlink()
    assert (PACKAGE / "telemetry").resolve() == ROOT / "telemetry"
    # and the worker's distribution leaves it out
    assert project(".")["tool"]["setuptools"]["packages"]["find"]["include"] == ["worker*"]
