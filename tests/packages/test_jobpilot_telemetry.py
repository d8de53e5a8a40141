"""The jobpilot-telemetry distribution alone, in clean venvs built by the README's and
``docs/install.md``'s commands: no jobpilot worker, no database libraries, and another team's app gets the
whole telemetry, on Celery 5.7 and on Celery 5.6 (both with kombu 5.7).

Each venv is made without pip (the test's own pip installs into it with ``--python``) and
installed once per module, with the lock's pins as constraints, so the resolver has one
answer and pip's cache serves the files. The app (``tests.support.inventory``) runs from a
folder that holds only it, so nothing of the checkout is importable there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.inventory_worker import check_the_whole_telemetry
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.worker_process import ROOT, WorkerProcess

pytestmark = pytest.mark.integration

DOCS = ROOT / "docs" / "install.md"
README = ROOT / "README.md"
#: pip builds a checkout in place, and setuptools packs whatever this folder holds.
BUILD_FOLDER = ROOT / "packages" / "jobpilot-telemetry" / "build"
LOCK = ROOT / "requirements" / "lock.txt"
#: The documented commands, run here as written (from the repository's root); the README
#: shows the first.
FROM_A_CHECKOUT = "pip install ./packages/jobpilot-telemetry"
BUILD_A_WHEEL = "pip wheel --no-deps --wheel-dir dist ./packages/jobpilot-telemetry"
FROM_A_WHEEL = "pip install dist/jobpilot_telemetry-*.whl"
#: The Celery 5.6 release the second venv installs beside kombu 5.7.
CELERY_5_6 = "celery==5.6.3"
#: Distributions that must not come with the install.
NOT_INSTALLED = ("worker", "sqlalchemy", "asyncpg", "aiosqlite")
PIP_TIMEOUT_SECONDS = 300
#: Added to the documented installs: the lock's pins as constraints (one answer for the
#: resolver), and no bytecode compiled ahead (a third of the install's time; Python compiles
#: what the test imports).
INSTALL_OPTIONS = ("--no-compile", "-c")


@dataclass(frozen=True)
class CleanVenv:
    python: str
    celery: str
    #: The Celery minor release installed there.
    celery_minor: str
    #: Holds the app module only: the worker and the producers run here.
    app_dir: Path


def pip(*args: str) -> None:
    """This venv's pip, from the repository's root, as the docs' commands are written."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stderr[-3000:]}"


def documented(command: str, *pages: Path) -> list[str]:
    """The arguments after ``pip`` of a command that docs/install.md (and ``pages``) show."""
    for page in (DOCS, *pages):
        assert command in page.read_text(), f"{page.name} no longer shows `{command}`"
    return command.split()[1:]


def constraints(folder: Path, celery: str | None) -> Path:
    """The lock's pins, hashes left out; Celery's replaced by ``celery`` when given."""
    pins = [
        line.split()[0].rstrip("\\")
        for line in LOCK.read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    ]
    if celery is not None:
        pins = [pin for pin in pins if not pin.startswith("celery==")] + [celery]
    path = folder / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def app_folder(folder: Path) -> Path:
    """A folder holding only the inventory app, as another team's checkout would."""
    app_dir = folder / "app"
    app_dir.mkdir()
    (app_dir / "inventory").symlink_to(ROOT / "tests" / "support" / "inventory")
    return app_dir


def install_from_a_checkout(python: str, folder: Path) -> None:
    """The README's command, beside the lock's Celery (5.7)."""
    command = documented(FROM_A_CHECKOUT, README)
    pip("--python", python, *command, *INSTALL_OPTIONS, str(constraints(folder, None)))


def install_from_a_wheel(python: str, folder: Path) -> None:
    """A wheel built as docs/install.md says, installed beside Celery 5.6."""
    build = documented(BUILD_A_WHEEL)
    build[build.index("--wheel-dir") + 1] = str(folder / "dist")
    pip(*build)
    install = documented(FROM_A_WHEEL)
    (wheel,) = (folder / "dist").glob(Path(install[-1]).name)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        tops = {name.split("/")[0] for name in names}
    # The failed-work page's files are package data (telemetry.ops.page)
    assert {f"telemetry/ops/static/failed.{ext}" for ext in ("html", "js", "css")} <= names
    # The reusable package and its metadata: no worker/, tests/, bench/ or dashboards/
    assert tops == {"telemetry", f"{wheel.name.split('-py3')[0]}.dist-info"}
    constrained = constraints(folder, CELERY_5_6)
    pip(
        "--python",
        python,
        *install[:-1],
        str(wheel),
        CELERY_5_6,
        *INSTALL_OPTIONS,
        str(constrained),
    )


@pytest.fixture(scope="module", params=["5.7", "5.6"], ids=lambda minor: f"celery-{minor}")
def clean_venv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CleanVenv]:
    """A venv with jobpilot-telemetry and its dependencies only, on that Celery minor."""
    folder = tmp_path_factory.mktemp(f"celery-{request.param}")
    shutil.rmtree(BUILD_FOLDER, ignore_errors=True)  # a module deleted since would come along
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", folder / "venv"], check=True)
    python = str(folder / "venv" / "bin" / "python")
    if request.param == "5.7":
        install_from_a_checkout(python, folder)
    else:
        install_from_a_wheel(python, folder)
    pip("--python", python, "check")
    yield CleanVenv(
        python, str(folder / "venv" / "bin" / "celery"), request.param, app_folder(folder)
    )


def test_the_install_brings_no_worker_and_no_database_library(clean_venv: CleanVenv) -> None:
    probe = (
        "import importlib.metadata as m, importlib.util as u, json, telemetry\n"
        "from telemetry.ops.page import Page\n"
        f"print(json.dumps({{'missing': [n for n in {NOT_INSTALLED!r} if u.find_spec(n) is None],\n"
        "  'telemetry': telemetry.__file__,\n"
        "  'page_files_missing': list(Page.load().missing),\n"
        "  'versions': {d: m.version(d) for d in ('celery', 'kombu', 'jobpilot-telemetry')}}))\n"
    )
    done = subprocess.run(
        [clean_venv.python, "-c", probe],
        cwd=clean_venv.app_dir,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["missing"] == list(NOT_INSTALLED)
    assert found["telemetry"].startswith(str(Path(clean_venv.python).parents[1]))
    assert found["page_files_missing"] == []
    assert found["versions"]["celery"].startswith(f"{clean_venv.celery_minor}.")
    assert found["versions"]["kombu"].startswith("5.7.")
    assert found["versions"]["jobpilot-telemetry"] == "0.1.0"


def test_another_teams_app_gets_the_whole_telemetry(
    clean_venv: CleanVenv,
    start_worker: Callable[..., WorkerProcess],
    receiver: OtlpReceiver,
    redis_client: object,
) -> None:
    """Given the inventory app run by the clean venv's `celery`, then its worker serves exact
    counts, /readyz 200, queue depth, and run spans parented by its producer's spans."""
    check_the_whole_telemetry(
        start_worker,
        receiver,
        app="inventory",
        celery=(clean_venv.celery,),
        python=clean_venv.python,
        cwd=clean_venv.app_dir,
    )
