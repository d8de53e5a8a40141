"""requirements/lock.txt satisfies both distributions' pyproject.toml (jobpilot-worker's
and jobpilot-telemetry's): every requirement, the extras included, and the extras those
requirements name, is met by one pinned line. The distributions of this repository are
built from it, not pinned."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
PYPROJECTS = (ROOT / "pyproject.toml", ROOT / "packages" / "jobpilot-telemetry" / "pyproject.toml")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.MULTILINE)


def pins(text: str) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall(text)}


def project_requirements() -> list[Requirement]:
    """Both distributions' requirements and extras, but their requirements on each other."""
    projects = [tomllib.loads(path.read_text())["project"] for path in PYPROJECTS]
    ours = {canonicalize_name(project["name"]) for project in projects}
    lines = []
    for project in projects:
        lines.extend(project["dependencies"])
        for extra in project["optional-dependencies"].values():
            lines.extend(extra)
    return [r for line in lines if canonicalize_name((r := Requirement(line)).name) not in ours]


def with_their_extras(requirements: list[Requirement]) -> list[Requirement]:
    """The requirements, plus what each one's extras pull in (``celery[redis]`` -> ``kombu[redis]`` ...)."""
    found = list(requirements)
    pending = [r for r in requirements if r.extras]
    seen: set[tuple[str, str]] = set()
    while pending:
        requirement = pending.pop()
        for extra in requirement.extras:
            if (requirement.name, extra) in seen:
                continue
            seen.add((requirement.name, extra))
            try:
                declared = requires(requirement.name) or []
            except PackageNotFoundError:
                continue  # reported as unpinned by unsatisfied()
            for line in declared:
                dependency = Requirement(line)
                if dependency.marker is not None and dependency.marker.evaluate({"extra": extra}):
                    dependency.marker = None  # it applies here: evaluated with this extra
                    found.append(dependency)
                    if dependency.extras:
                        pending.append(dependency)
    return found


def unsatisfied(requirements: list[Requirement], pinned: dict[str, str]) -> list[str]:
    """Each requirement no pinned line satisfies, with the pin (or its absence)."""
    problems = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # not for this platform or Python
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement}: not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement}: the lock pins {version}")
    return problems


def test_the_lock_satisfies_every_requirement_and_extra() -> None:
    requirements = with_their_extras(project_requirements())
    names = {canonicalize_name(r.name) for r in requirements}
    # Both projects' extras and the extras of their requirements are in the check
    assert {
        "opentelemetry-exporter-otlp-proto-grpc",
        "opentelemetry-instrumentation-sqlalchemy",
        "pytest",
        "redis",
        "greenlet",
    } <= names
    assert "jobpilot-telemetry" not in names
    assert unsatisfied(requirements, pins(LOCK.read_text())) == []


def test_every_pin_has_hashes_for_pip_require_hashes() -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n\n", 1)[-1].strip())
    assert entries and all("--hash=sha256:" in entry for entry in entries if "==" in entry)


def test_a_disagreeing_lock_is_caught() -> None:
    requirements = [Requirement("kombu>=5.7,<5.8"), Requirement("prometheus-client>=0.20")]
    assert unsatisfied(requirements, {"kombu": "5.8.0"}) == [
        "kombu<5.8,>=5.7: the lock pins 5.8.0",
        "prometheus-client>=0.20: not in the lock",
    ]


def test_the_lock_leaves_out_what_this_repository_builds() -> None:
    assert not {"jobpilot-telemetry", "jobpilot-worker"} & set(pins(LOCK.read_text()))
