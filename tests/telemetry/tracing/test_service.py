"""``service.name`` defaults to the app's own name; ``OTEL_*`` variables win over every default."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from celery import Celery
from celery.bin.celery import celery as celery_command

from telemetry.tracing.providers import worker_resource
from telemetry.tracing.service import Service, app_service_name, cli_app_module
from telemetry.version import __version__


def celery_cli(app_argument: str | None) -> click.Context:
    """The root context the ``celery`` command keeps while it runs, with ``-A`` as given."""
    context = click.Context(celery_command, info_name="celery")
    context.params["app"] = app_argument
    return context


@pytest.fixture
def not_in_a_command() -> Iterator[None]:
    assert click.get_current_context(silent=True) is None
    yield


def test_the_app_main_name_is_the_default(not_in_a_command: None) -> None:
    assert Service().for_app(Celery("inventory")) == Service("inventory", None)


def test_a_given_name_and_version_win_over_the_app_name() -> None:
    given = Service("billing-worker", "2.1.0")
    assert given.for_app(Celery("inventory")) == Service("billing-worker", "2.1.0")


@pytest.mark.parametrize(
    ("argument", "module"),
    [
        ("proj.tasks", "proj.tasks"),
        ("proj.celery:app", "proj.celery"),
        (" proj ", "proj"),
        # An attribute of an imported module, as `celery -A` resolves it
        ("json.decoder.JSONDecoder", "json.decoder"),
    ],
)
@pytest.mark.parametrize("main", [None, "__main__"])
def test_without_a_main_name_the_celery_a_module_is_the_name(
    argument: str, module: str, main: str | None
) -> None:
    with celery_cli(argument):
        assert app_service_name(Celery(main)) == module


def test_the_main_name_wins_over_the_celery_a_module() -> None:
    with celery_cli("proj.tasks"):
        assert app_service_name(Celery("inventory")) == "inventory"


@pytest.mark.parametrize("argument", [None, "", "   "])
def test_no_name_without_a_main_name_or_an_a_module(argument: str | None) -> None:
    with celery_cli(argument):
        assert cli_app_module() is None
        assert Service().for_app(Celery()) == Service(None, None)


def test_an_app_handed_over_as_an_object_has_no_a_module() -> None:
    # app.worker_main() puts the app itself where `-A` would be
    with celery_cli(Celery()):  # type: ignore[arg-type]
        assert cli_app_module() is None


def test_the_real_celery_command_gives_its_a_module(tmp_path: Path) -> None:
    """Given an app without a main name in a module of its own, when `celery -A` loads
    it, then the module name is the service name."""
    (tmp_path / "nameless_app.py").write_text(
        "import sys\n"
        "from celery import Celery\n"
        "from telemetry.tracing.service import Service\n"
        "app = Celery()\n"
        "print('service.name =', Service().for_app(app).name, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "nameless_app:app", "report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "service.name = nameless_app\n" in done.stderr


def test_the_defaults_make_the_resource() -> None:
    resource = worker_resource(Service("inventory", "3.2.1"), "w1@host").attributes
    assert resource["service.name"] == "inventory"
    assert resource["service.version"] == "3.2.1"
    assert resource["celery.worker.hostname"] == "w1@host"
    assert resource["telemetry.distro.name"] == "jobpilot-telemetry"
    assert resource["telemetry.distro.version"] == __version__
    assert {"service.instance.id", "host.name", "telemetry.sdk.version"} <= set(resource)


def test_an_unset_default_leaves_the_sdk_default() -> None:
    resource = worker_resource(Service()).attributes
    assert str(resource["service.name"]).startswith("unknown_service")
    assert "service.version" not in resource
    assert "celery.worker.hostname" not in resource


def test_otel_service_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-the-variable")
    resource = worker_resource(Service("inventory", "3.2.1")).attributes
    assert resource["service.name"] == "from-the-variable"
    assert resource["service.version"] == "3.2.1"


def test_otel_resource_attributes_win_key_by_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=orders,service.version=9.9,host.name=node-7,deployment.environment=prod",
    )
    resource = worker_resource(Service("inventory", "3.2.1"), "w1@host").attributes
    assert resource["service.name"] == "orders"
    assert resource["service.version"] == "9.9"
    assert resource["host.name"] == "node-7"
    assert resource["deployment.environment"] == "prod"
    # The defaults no variable names stay
    assert resource["celery.worker.hostname"] == "w1@host"


def test_otel_service_name_wins_over_otel_resource_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=orders")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-the-variable")
    assert worker_resource(Service("inventory")).attributes["service.name"] == "from-the-variable"
