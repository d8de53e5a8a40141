"""The failed-work page as the ops server serves it: its files, its headers, GET /api/v1/ops."""

from __future__ import annotations

import http.client
import re
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch

import pytest
import redis
from celery import Celery

from telemetry.deadletters.policy import DEFAULT_POLICY
from telemetry.failed.operations import FailedWork
from telemetry.failed.records import Kind
from telemetry.failed.requeue import Requeuer
from telemetry.failed.store import Caps, FailedStore, StoreKeys
from telemetry.ops.access import AccessPolicy
from telemetry.ops.audit import AuditLog
from telemetry.ops.page import Page
from telemetry.ops.server import OpsServer
from telemetry.settings import ConfigError, TelemetrySettings, read_settings
from tests.conftest import redis_url
from tests.support.failed import OpsClient
from tests.support.worker_process import ROOT

TOKEN = b"an-operator-token-of-some-length"
STATIC = ROOT / "telemetry" / "ops" / "static"
TRACE_URL = "https://tracing.example/trace/{trace_id}?from=ops"
#: What the page's policy must hold, directive by directive, and what it must never allow.
PAGE_DIRECTIVES = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "connect-src": "'self'",
    "img-src": "'self'",
    "base-uri": "'none'",
    "form-action": "'none'",
    "frame-ancestors": "'none'",
    "require-trusted-types-for": "'script'",
}
NEVER = ("unsafe-inline", "unsafe-eval", "unsafe-hashes", "data:", "*", "http:", "https:")
#: Calls that parse a string as HTML or code: the script must use none of them.
PARSERS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
    r"setTimeout\(\s*['\"`]|setInterval\(\s*['\"`]|DOMParser|createContextualFragment"
)


def serve(client: redis.Redis, policy: AccessPolicy, **kwargs: object) -> OpsServer:
    app = Celery("ops-page-test", broker=redis_url(), set_as_current=False)
    stores = {
        kind: FailedStore(client, StoreKeys.of(f"t:{kind}"), Caps(100, 10**6)) for kind in Kind
    }
    server = OpsServer(
        "127.0.0.1",
        0,
        FailedWork(stores, Requeuer(app, None, DEFAULT_POLICY)),
        policy,
        AuditLog(client, "t:audit"),
        **kwargs,  # type: ignore[arg-type]
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def closed_reads() -> Iterator[OpsClient]:
    """A server whose reads and writes both need the token; a client without it. Shared by
    the module's tests: none of them reaches the broker (stopping a server takes 0.5 s)."""
    client = redis.Redis.from_url(redis_url())
    server = serve(
        client, AccessPolicy(TOKEN, False, frozenset({"127.0.0.1"})), trace_url=TRACE_URL
    )
    yield OpsClient(server.address[1])
    server.stop()
    client.close()


def raw_get(client: OpsClient, path: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    """The answer's bytes, not JSON: the page's files are not."""
    connection = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10)
    try:
        connection.request(method, path, headers={"Host": f"{client.host}:{client.port}"})
        response = connection.getresponse()
        return (
            response.status,
            response.read(),
            {k.lower(): v for k, v in response.getheaders()},
        )
    finally:
        connection.close()


def policy_of(header: str) -> dict[str, str]:
    directives = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {name: value for name, value in directives}


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/failed", "failed.html", "text/html; charset=utf-8"),
        ("/failed.js", "failed.js", "text/javascript; charset=utf-8"),
        ("/failed.css", "failed.css", "text/css; charset=utf-8"),
    ],
)
def test_the_page_and_its_files_are_served_whole_with_strict_headers_and_no_token(
    closed_reads: OpsClient, path: str, name: str, content_type: str
) -> None:
    # Given a server whose reads need a token, when a client without one asks for the page
    status, body, headers = raw_get(
        closed_reads, path + ("?kind=exhausted" if name.endswith("html") else "")
    )
    # Then the file is the package's own, byte for byte
    assert status == 200 and body == (STATIC / name).read_bytes()
    assert headers["content-type"] == content_type
    # And the policy loads scripts, styles, fetches and images from the page's origin only
    policy = policy_of(headers["content-security-policy"])
    assert {key: policy.get(key) for key in PAGE_DIRECTIVES} == PAGE_DIRECTIVES
    assert policy["trusted-types"] == "'none'"
    for allowance in NEVER:
        assert allowance not in policy.values(), allowance
        assert f" {allowance}" not in headers["content-security-policy"], allowance
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"


def test_api_answers_carry_a_policy_that_allows_nothing(closed_reads: OpsClient) -> None:
    for path in ("/api/v1/ops", "/api/v1/failed", "/nowhere"):
        _, _, headers = closed_reads.request("GET", path)
        assert policy_of(headers["content-security-policy"]) == {
            "default-src": "'none'",
            "frame-ancestors": "'none'",
        }, path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("token", "read_open", "mode"),
    [
        (None, False, {"writes": "off", "reads": "open"}),
        (TOKEN, False, {"writes": "token", "reads": "token"}),
        (TOKEN, True, {"writes": "token", "reads": "open"}),
    ],
)
def test_the_ops_route_tells_the_page_its_mode_and_trace_link_without_a_token(
    redis_client: redis.Redis, token: bytes | None, read_open: bool, mode: dict[str, str]
) -> None:
    server = serve(
        redis_client, AccessPolicy(token, read_open, frozenset({"127.0.0.1"})), trace_url=TRACE_URL
    )
    try:
        anonymous = OpsClient(server.address[1])
        assert anonymous.get("/api/v1/ops") == (200, {**mode, "trace_url": TRACE_URL})
        status, answer = anonymous.get("/api/v1/ops?verbose=1")
        assert (status, answer["key"]) == (400, "verbose")
        assert anonymous.get("/api/v1/failed")[0] == (401 if mode["reads"] == "token" else 200)
    finally:
        server.stop()


def test_the_page_keeps_the_host_check_and_answers_get_only(closed_reads: OpsClient) -> None:
    elsewhere = OpsClient(closed_reads.port, host="rebound.example")
    for path in ("/failed", "/failed.js", "/api/v1/ops", "/"):
        assert elsewhere.request("GET", path)[0] == 400, path
    assert closed_reads.post("/failed", {"dry_run": True})[0] == 405
    assert closed_reads.request("PUT", "/failed.js")[0] == 405
    status, body, headers = raw_get(closed_reads, "/failed", method="HEAD")
    assert (status, body) == (200, b"") and int(headers["content-length"]) > 0
    # The root leads to the page, and the icon browsers ask for is empty, not a 404
    status, _, headers = raw_get(closed_reads, "/")
    assert (status, headers["location"]) == (303, "failed")
    status, body, headers = raw_get(closed_reads, "/favicon.ico")
    assert (status, body) == (204, b"") and "content-length" not in headers
    assert closed_reads.request("GET", "/failed/other")[0] == 404


def test_a_file_missing_from_the_install_is_a_500_naming_it(redis_client: redis.Redis) -> None:
    page = Page.load()
    assert page.missing == ()
    broken = Page({path: asset for path, asset in page.assets.items() if path != "/failed.js"})
    server = serve(redis_client, AccessPolicy(None, False, frozenset({"127.0.0.1"})))
    server.page = broken
    try:
        client = OpsClient(server.address[1])
        assert raw_get(client, "/failed")[0] == 200
        status, answer = client.get("/failed.js")
        assert (status, answer["error"]) == (500, "the page's files are missing from this install")
    finally:
        server.stop()


def test_the_page_has_no_inline_code_no_outside_address_and_no_html_parsing() -> None:
    html = (STATIC / "failed.html").read_text()
    script = (STATIC / "failed.js").read_text()
    style = (STATIC / "failed.css").read_text()
    # Its only script and stylesheet are its own, by relative address
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="failed.js" defer>']
    assert re.findall(r"<link\b[^>]*>", html) == ['<link rel="stylesheet" href="failed.css">']
    assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
    assert not re.search(r"\sstyle\s*=", html) and "<style" not in html
    for address in re.findall(r'(?:src|href|action)="([^"]*)"', html):
        assert ":" not in address and not address.startswith("/"), address
    assert "@import" not in style and "url(" not in style
    # And the script never hands a string to an HTML or code parser
    assert not PARSERS.findall(script)
    assert "textContent" in script
    assert "sessionStorage" in script and "localStorage" not in script
    assert "document.cookie" not in script


def test_ops_trace_url_must_be_a_web_address_with_the_placeholder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = read_settings(TelemetrySettings)
    assert settings.ops_trace_url == "http://localhost:16686/trace/{trace_id}"
    monkeypatch.setenv("OPS_TRACE_URL", TRACE_URL)
    assert read_settings(TelemetrySettings).ops_trace_url == TRACE_URL
    for value, problem in (
        ("http://jaeger:16686/trace/", "must contain {trace_id}"),
        ("javascript:alert(1)//{trace_id}", "an http:// or https:// address"),
        ("/trace/{trace_id}", "an http:// or https:// address"),
    ):
        monkeypatch.setenv("OPS_TRACE_URL", value)
        with pytest.raises(ConfigError) as caught:
            read_settings(TelemetrySettings)
        assert str(caught.value) == f"settings: OPS_TRACE_URL: {problem}"


def test_the_static_folder_holds_the_three_files_and_nothing_else() -> None:
    assert sorted(path.name for path in STATIC.iterdir() if path.is_file()) == [
        "failed.css",
        "failed.html",
        "failed.js",
    ]


def test_every_distribution_of_the_telemetry_package_ships_the_page() -> None:
    """The files are package data: a distribution that builds ``telemetry`` without them
    would serve a page of 500s. (A wheel built from the checkout was seen to hold them.)"""
    builders = []
    for path in [ROOT / "pyproject.toml", *sorted(ROOT.glob("packages/*/pyproject.toml"))]:
        setuptools = tomllib.loads(path.read_text())["tool"]["setuptools"]
        if "telemetry*" in setuptools["packages"]["find"]["include"]:
            builders.append((path, setuptools.get("package-data", {}).get("telemetry.ops", [])))
    assert builders
    for path, patterns in builders:
        for shipped in STATIC.iterdir():
            assert any(fnmatch(f"static/{shipped.name}", p) for p in patterns), (path, shipped)
