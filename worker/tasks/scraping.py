"""Scraping: fetch a page and extract its links.

The fetch is simulated (the worker has no outbound network in this project's
environments): a deterministic page is generated from the URL, after a delay
that stands in for network time, and then really parsed.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

from celery.exceptions import Reject

from worker.celery_app import app

LINK = re.compile(r'href="([^"]+)"')
MAX_SIMULATED_LATENCY_SECONDS = 2.0


def simulated_page(url: str) -> str:
    digest = hashlib.sha256(url.encode()).hexdigest()
    links = "".join(f'<a href="/p/{digest[i : i + 6]}">{i}</a>' for i in range(0, 60, 6))
    return f"<html><body><h1>{digest[:12]}</h1>{links}</body></html>"


@app.task(name="scrape_page")
def scrape_page(url: str, latency: float = 0.01) -> dict[str, Any]:
    """Links found on ``url`` (absolute), and the page's size."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise Reject("bad_arguments: url must be an absolute http(s) URL", requeue=False)
    if not isinstance(latency, int | float) or not 0 <= latency <= MAX_SIMULATED_LATENCY_SECONDS:
        raise Reject("bad_arguments: latency out of range", requeue=False)
    time.sleep(latency)
    page = simulated_page(url)
    links = sorted({urljoin(url, href) for href in LINK.findall(page)})
    return {"url": url, "bytes": len(page), "links": links}
