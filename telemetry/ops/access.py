"""Who may use the operator API: the token, the Host check, and the client's address.

    policy = AccessPolicy.from_settings(settings)
    policy.host_allowed(headers.get("Host"))           # False: 400
    policy.denial(write=True, authorization=header)    # None, or (status, message)
    policy.client(peer, headers.get("X-Forwarded-For"))

* Without ``OPS_TOKEN`` the API is read-only: every write is 403.
* With it, a write needs ``Authorization: Bearer <OPS_TOKEN>`` (401 otherwise),
  and so does a read unless ``OPS_READ_OPEN=true``. The comparison is
  ``hmac.compare_digest``; the token is never logged or counted.
* ``Host`` (its port ignored) must be one of ``OPS_ALLOWED_HOSTS``, by default
  ``localhost``, ``127.0.0.1``, ``[::1]`` and ``OPS_HOST`` when it names a
  specific address: a page on another site cannot reach the API through DNS
  rebinding.
* ``X-Forwarded-For`` is believed only from ``OPS_TRUSTED_PROXIES``: the client
  is the nearest address in it that is not a trusted proxy.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass, field
from http import HTTPStatus

from telemetry.settings import TelemetrySettings

DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: OPS_HOST values that bind every address: they name no host a client would use.
ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")
BEARER = "bearer "

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def host_name(host: str) -> str:
    """``Host`` without its port, lower-cased; an IPv6 literal keeps its brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _bracketed(address: str) -> str:
    address = address.strip().lower()
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


@dataclass(frozen=True)
class AccessPolicy:
    token: bytes | None = field(repr=False)
    read_open: bool
    allowed_hosts: frozenset[str]
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: TelemetrySettings) -> AccessPolicy:
        if settings.ops_allowed_hosts is not None:
            hosts = {
                _bracketed(name) for name in settings.ops_allowed_hosts.split(",") if name.strip()
            }
        else:
            hosts = set(DEFAULT_ALLOWED_HOSTS)
            if settings.ops_host.strip() not in ANY_ADDRESS:
                hosts.add(_bracketed(settings.ops_host))
        proxies = tuple(
            ipaddress.ip_network(entry.strip(), strict=False)
            for entry in settings.ops_trusted_proxies.split(",")
            if entry.strip()
        )
        token = settings.ops_token.get_secret_value().encode() if settings.ops_token else None
        return cls(token, settings.ops_read_open, frozenset(hosts), proxies)

    @property
    def writes(self) -> str:
        """``off`` (read-only) or ``token``."""
        return "off" if self.token is None else "token"

    @property
    def reads(self) -> str:
        """``open`` or ``token``."""
        return "open" if self.token is None or self.read_open else "token"

    def host_allowed(self, host: str | None) -> bool:
        return host is not None and host_name(host) in self.allowed_hosts

    def denial(self, *, write: bool, authorization: str | None) -> tuple[int, str] | None:
        """Why a request is refused, as (status, message); None when it may go on."""
        if write and self.token is None:
            return HTTPStatus.FORBIDDEN, "read-only: writes need OPS_TOKEN set on the exporter"
        if not write and self.reads == "open":
            return None
        assert self.token is not None
        given = authorization or ""
        if given[: len(BEARER)].lower() != BEARER:
            return HTTPStatus.UNAUTHORIZED, "Authorization: Bearer <OPS_TOKEN> required"
        presented = given[len(BEARER) :].strip().encode("utf-8", "replace")
        if not hmac.compare_digest(presented, self.token):
            return HTTPStatus.UNAUTHORIZED, "Authorization: Bearer <OPS_TOKEN> required"
        return None

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: the peer, or through trusted proxies, the nearest other hop."""
        if not forwarded_for or not self._trusted(peer):
            return peer
        for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
            if not self._trusted(hop):
                return hop
        return peer
