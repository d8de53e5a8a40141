"""Who may read and write, which Host is answered, and whose address is audited."""

from __future__ import annotations

import pytest

from telemetry.ops.access import AccessPolicy, host_name
from telemetry.settings import TelemetrySettings, read_settings

TOKEN = "a-token-of-twenty-chars"


def policy(monkeypatch: pytest.MonkeyPatch, **env: str) -> AccessPolicy:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return AccessPolicy.from_settings(read_settings(TelemetrySettings))


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:9467", "localhost"),
        ("LOCALHOST", "localhost"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]:9467", "[::1]"),
        ("[::1]", "[::1]"),
        ("ops.example.com", "ops.example.com"),
    ],
)
def test_the_port_is_ignored(header: str, name: str) -> None:
    assert host_name(header) == name


def test_default_hosts_are_loopback_plus_a_specific_ops_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = policy(monkeypatch)
    assert default.allowed_hosts == {"localhost", "127.0.0.1", "[::1]"}
    assert default.host_allowed("localhost:9467") and not default.host_allowed("evil.example")
    assert not default.host_allowed(None)
    assert policy(monkeypatch, OPS_HOST="10.1.2.3").host_allowed("10.1.2.3:9467")
    assert policy(monkeypatch, OPS_HOST="0.0.0.0").allowed_hosts == {
        "localhost",
        "127.0.0.1",
        "[::1]",
    }
    listed = policy(monkeypatch, OPS_ALLOWED_HOSTS="ops.example.com, ::1")
    assert listed.allowed_hosts == {"ops.example.com", "[::1]"}


def test_without_a_token_reads_are_open_and_writes_forbidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    open_policy = policy(monkeypatch)
    assert (open_policy.writes, open_policy.reads) == ("off", "open")
    assert open_policy.denial(write=False, authorization=None) is None
    assert open_policy.denial(write=True, authorization=f"Bearer {TOKEN}") == (
        403,
        "read-only: writes need OPS_TOKEN set on the exporter",
    )


def test_with_a_token_every_request_needs_it_unless_reads_are_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = policy(monkeypatch, OPS_TOKEN=TOKEN)
    assert (closed.writes, closed.reads) == ("token", "token")
    for write in (False, True):
        assert closed.denial(write=write, authorization=None) is not None
        assert closed.denial(write=write, authorization="Bearer wrong")[0] == 401  # type: ignore[index]
        assert closed.denial(write=write, authorization=f"Basic {TOKEN}") is not None
        assert closed.denial(write=write, authorization=f"Bearer {TOKEN}") is None
        assert closed.denial(write=write, authorization=f"bearer {TOKEN}") is None
    reads_open = policy(monkeypatch, OPS_TOKEN=TOKEN, OPS_READ_OPEN="true")
    assert reads_open.denial(write=False, authorization=None) is None
    assert reads_open.denial(write=True, authorization=None)[0] == 401  # type: ignore[index]


def test_the_token_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_TOKEN", TOKEN)
    settings = read_settings(TelemetrySettings)
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
    assert TOKEN not in repr(AccessPolicy.from_settings(settings))


def test_forwarded_for_is_believed_from_trusted_proxies_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    untrusting = policy(monkeypatch)
    assert untrusting.client("10.0.0.5", "203.0.113.7") == "10.0.0.5"
    trusting = policy(monkeypatch, OPS_TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.1")
    assert trusting.client("10.0.0.5", "203.0.113.7") == "203.0.113.7"
    # The nearest untrusted hop: what the client claims before it is not believed
    assert trusting.client("10.0.0.5", "198.51.100.1, 203.0.113.7, 192.0.2.1") == "203.0.113.7"
    assert trusting.client("172.16.0.1", "203.0.113.7") == "172.16.0.1"
    assert trusting.client("10.0.0.5", "10.0.0.9") == "10.0.0.5"
