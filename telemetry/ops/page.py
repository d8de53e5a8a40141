"""The failed-work page: one HTML file, its script and its style, served by the ops server.

    page = Page.load()
    page.asset("/failed")        # Asset(body, content_type), or None for a path of the API

The files are package data (``telemetry/ops/static/``), read once when the server
is built: what is in that folder is what the browser gets, with no build step, no
CDN and no framework. The page refers to its script, its style and the API by
relative addresses, so it works behind a proxy that serves it under a prefix.

Every answer of the ops server carries :data:`SECURITY_HEADERS`. The page's
Content-Security-Policy (:data:`PAGE_POLICY`) loads scripts, styles, images and
fetches from its own origin only, with no inline script or style and no ``eval``;
``require-trusted-types-for 'script'`` makes the browser refuse any string the
script would hand to an HTML parser (``innerHTML`` and its kind), so a record's
text can only ever be text. The API's answers get :data:`API_POLICY`, which
allows nothing at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.resources import files

logger = logging.getLogger("telemetry.ops")

PAGE_PATH = "/failed"
#: Path -> (file in telemetry/ops/static, Content-Type). The paths are fixed: the
#: HTML names its script and style relative to its own address.
FILES = {
    PAGE_PATH: ("failed.html", "text/html; charset=utf-8"),
    f"{PAGE_PATH}.js": ("failed.js", "text/javascript; charset=utf-8"),
    f"{PAGE_PATH}.css": ("failed.css", "text/css; charset=utf-8"),
}

PAGE_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


class Page:
    """The page's files, held in memory; a file missing from the install is named once."""

    def __init__(self, assets: dict[str, Asset], missing: tuple[str, ...] = ()) -> None:
        self.assets = assets
        self.missing = missing

    @classmethod
    def load(cls) -> Page:
        folder = files("telemetry.ops").joinpath("static")
        assets: dict[str, Asset] = {}
        missing: list[str] = []
        for path, (name, content_type) in FILES.items():
            try:
                assets[path] = Asset(folder.joinpath(name).read_bytes(), content_type)
            except OSError:
                missing.append(name)
        if missing:
            logger.error(
                "ops: the failed-work page's file(s) %s are missing from the installed "
                "telemetry package; /failed answers 500",
                ", ".join(missing),
            )
        return cls(assets, tuple(missing))

    @staticmethod
    def serves(path: str) -> bool:
        return path in FILES

    def asset(self, path: str) -> Asset | None:
        """The file at ``path``; None when the path is not the page's, or its file is missing."""
        return self.assets.get(path)
